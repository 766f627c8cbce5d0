"""Which format a model writes: named in radiance.yaml (``tool_parser:``, vLLM's parser
names accepted) or found from the markers its chat template contains, as llama.cpp's
common/chat.cpp does."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.openai.tool_formats.deepseek import CALLS_BEGIN, DeepSeek
from appliance.openai.tool_formats.generic import Generic, Plain
from appliance.openai.tool_formats.harmony import Harmony
from appliance.openai.tool_formats.hermes import Hermes
from appliance.openai.tool_formats.llama3 import PYTHON_TAG, Llama3
from appliance.openai.tool_formats.mistral import TOOL_CALLS, Mistral
from appliance.openai.tool_formats.model import Family, IdFactory, Tools, random_call_id
from appliance.openai.tool_formats.parser import FormatParser
from appliance.openai.tool_formats.prefixed_list import GRANITE, PHI4_MINI
from appliance.openai.tool_formats.qwen3_coder import Qwen3Coder
from appliance.openai.tool_formats.reasoning import OPEN as THINK_OPEN
from appliance.openai.tool_formats.reasoning import Thinking, prompt_opens_thinking

_ALL: tuple[Family, ...] = (
    Hermes(),
    Qwen3Coder(),
    Llama3(),
    Mistral(),
    DeepSeek(),
    Harmony(),
    GRANITE,
    PHI4_MINI,
    Generic(),
)
FAMILIES: dict[str, Family] = {family.name: family for family in _ALL}
FAMILIES["plain"] = Plain()

# vLLM's --tool-call-parser names (and a few spellings of ours) -> our family.
ALIASES = {
    "hermes": "hermes",
    "qwen": "hermes",
    "qwen3_coder": "qwen3_coder",
    "qwen3_xml": "qwen3_coder",
    "llama3_json": "llama3",
    "llama4_json": "llama3",
    "llama3": "llama3",
    "mistral": "mistral",
    "deepseek_v3": "deepseek",
    "deepseek_v31": "deepseek",
    "deepseek": "deepseek",
    "openai": "harmony",
    "granite": "granite",
    "phi4_mini_json": "phi4_mini",
    "phi4_mini": "phi4_mini",
    "harmony": "harmony",
    "generic": "generic",
    "json": "generic",
    "plain": "plain",
}


class UnknownFormat(ValueError):
    """A ``tool_parser`` name that no family answers to."""


@dataclass(frozen=True)
class ToolFormat:
    """A model's output format: its tool-call family and whether it thinks in <think>."""

    family: Family
    thinking: bool = False

    @property
    def name(self) -> str:
        return self.family.name

    def parser(
        self,
        tools: Tools,
        *,
        prompt: str = "",
        ids: IdFactory = random_call_id,
    ) -> FormatParser:
        """The parser for one answer to ``prompt`` (the rendered prompt text tells
        whether the answer starts inside ``<think>``)."""
        family = self.family
        if self.thinking or prompt_opens_thinking(prompt):
            family = Thinking(family, opens_inside=prompt_opens_thinking(prompt))
        return FormatParser(family, tools, ids)


def by_name(name: str, *, thinking: bool = False) -> ToolFormat:
    """The format radiance.yaml names; UnknownFormat lists the names known."""
    family = ALIASES.get(name.lower())
    if family is None:
        raise UnknownFormat(f"unknown tool_parser {name!r}; known: {', '.join(sorted(ALIASES))}")
    return ToolFormat(FAMILIES[family], thinking)


def detect(template: str | None) -> ToolFormat:
    """The format a chat template's markers point to (generic JSON when none does)."""
    source = template or ""
    thinking = THINK_OPEN in source
    if "<|channel|>" in source:
        name = "harmony"
    elif CALLS_BEGIN in source or "tool▁calls▁begin" in source:
        name = "deepseek"
    elif "<function=" in source and "<parameter=" in source:
        name = "qwen3_coder"
    elif "<tool_call>" in source:
        name = "hermes"
    elif TOOL_CALLS in source:
        name = "mistral"
    elif GRANITE.marker in source:
        name = "granite"
    elif "functools[" in source:
        name = "phi4_mini"
    elif (
        PYTHON_TAG in source
        or "<|start_header_id|>ipython" in source
        or ("<|start_header_id|>" in source and "tools" in source)
    ):
        name = "llama3"
    else:
        name = "generic"
    return ToolFormat(FAMILIES[name], thinking and name != "harmony")
