"""Render chat messages with the Jinja template a GGUF file carries.

Templates follow Hugging Face conventions (``messages``, ``add_generation_prompt``,
``tools``, ``bos_token``, ``eos_token``, plus ``reasoning_effort`` and whatever
``chat_template_kwargs`` a client passes, e.g. ``enable_thinking``). They run in Jinja's
immutable sandbox: a template is data from a model file, not trusted code.

Client text never becomes a special token: before rendering, every special token's text
inside a client string is split by MARK (a Unicode noncharacter), so the tokenizer can
be given the rendered prompt cut at the marks, each piece parsed for the template's own
special tokens, and no piece holding a whole special token that a client wrote.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from backends.base import EngineError, UnsupportedRequest

# Splits a special token's text where a client wrote it; never part of real text.
MARK = "\ufdd0"
# Variables a template reads that chat_template_kwargs may not replace.
RESERVED = frozenset(
    {"messages", "tools", "add_generation_prompt", "bos_token", "eos_token", "raise_exception"}
)

# Used when a GGUF carries no template: ChatML, which most small instruct models use.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{{ (message['content'] or '') + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TOOL_INSTRUCTIONS = (
    "You may call one or more functions to assist with the user query. "
    "Function signatures are within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n"
    "For each function call, return a JSON object with the function name and arguments "
    "within <tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


class ChatTemplate:
    """A compiled chat template plus the special tokens it may print."""

    def __init__(
        self,
        source: str | None,
        bos_token: str,
        eos_token: str,
        special_tokens: Iterable[str] = (),
    ) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = lambda value, indent=None: json.dumps(
            value, ensure_ascii=False, indent=indent
        )
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        self.source = source or CHATML_TEMPLATE
        try:
            self._template = env.from_string(self.source)
        except jinja2.TemplateError as exc:
            raise EngineError(f"the model's chat template does not compile: {exc}") from exc
        self._bos = bos_token
        self._eos = eos_token
        # A template that never mentions tools gets them described in a system message.
        self.renders_tools = "tools" in self.source
        # One-character specials cannot be split; longest first, as the tokenizer matches.
        specials = {t for t in special_tokens if len(t) > 1}
        self._specials = re.compile(_trie_pattern(specials)) if specials else None

    def render(
        self,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None,
        *,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        template_kwargs: Mapping[str, Any] | None = None,
        reasoning_effort: str | None = None,
    ) -> str:
        """The prompt text, client strings marked (see MARK); ``continue_final_message``
        ends it inside the last (assistant) message, for the model to go on writing."""
        prepared: list[dict[str, Any]] = self._marked(_for_template(messages))
        tools = self._marked(list(tools)) if tools else None
        if tools and not self.renders_tools:
            prepared = _with_tool_instructions(prepared, tools)
        extra = dict(template_kwargs or {})
        for key in extra:
            if key in RESERVED:
                raise UnsupportedRequest(
                    f"chat_template_kwargs may not set {key!r}", "chat_template_kwargs"
                )
        if reasoning_effort is not None:
            extra.setdefault("reasoning_effort", reasoning_effort)
        final = prepared[-1] if prepared else {}
        if continue_final_message and (
            final.get("role") != "assistant" or not isinstance(final.get("content"), str)
        ):
            raise UnsupportedRequest(
                "continuing the final message needs an assistant message with text last",
                "messages",
            )
        try:
            text = self._template.render(
                **self._marked(extra),
                messages=prepared,
                tools=tools,
                add_generation_prompt=add_generation_prompt and not continue_final_message,
                bos_token=self._bos,
                eos_token=self._eos,
            )
        except jinja2.TemplateError as exc:
            raise EngineError(f"the model's chat template rejected the messages: {exc}") from exc
        except Exception as exc:  # a template is a model file's code: any failure refuses
            raise EngineError(
                f"the model's chat template failed on these messages: {type(exc).__name__}"
            ) from exc
        if continue_final_message:
            prefix = str(final["content"]).strip()
            end = text.rfind(prefix)
            if not prefix or end < 0:
                raise UnsupportedRequest(
                    "the chat template does not show the final message's text to continue",
                    "messages",
                )
            text = text[: end + len(prefix)]
        return text

    def _marked(self, value: Any) -> Any:
        """``value`` with MARK inside every special token's text in its strings."""
        specials = self._specials
        if specials is None:
            return value
        if isinstance(value, str):
            if MARK in value:
                value = value.replace(MARK, "")
            return specials.sub(lambda m: m[0][0] + MARK + m[0][1:], value)
        if isinstance(value, Mapping):
            return {k: self._marked(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._marked(v) for v in value]
        return value


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, the longest where several match, that tries
    only the words sharing the text's next characters (a vocabulary may hold thousands
    of special tokens)."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def pattern(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + pattern(child) for char, child in node.items() if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return pattern(trie)


def _for_template(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as real templates read them: an assistant call's ``arguments`` as an
    object (Llama 3.x and Qwen templates ``tojson`` them) and a tool message's ``name``
    (the function whose call it answers) when the client left it out."""
    names: dict[str, str] = {}
    result: list[dict[str, Any]] = []
    for message in messages:
        calls = message.get("tool_calls")
        if message.get("role") == "assistant" and isinstance(calls, list):
            message = {**message, "tool_calls": [_call_for_template(c, names) for c in calls]}
        elif message.get("role") == "tool" and not message.get("name"):
            name = names.get(str(message.get("tool_call_id")))
            if name is not None:
                message = {**message, "name": name}
        result.append(message)
    return result


def _call_for_template(call: Any, names: dict[str, str]) -> Any:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return call
    function = call["function"]
    if isinstance(call.get("id"), str) and isinstance(function.get("name"), str):
        names[call["id"]] = function["name"]
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            decoded = json.loads(arguments)
        except ValueError:
            return call
        if isinstance(decoded, dict):
            return {**call, "function": {**function, "arguments": decoded}}
    return call


def _with_tool_instructions(
    messages: list[dict[str, Any]], tools: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    listing = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    text = TOOL_INSTRUCTIONS.format(tools=listing)
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        first["content"] = f"{first.get('content') or ''}\n\n{text}"
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]
