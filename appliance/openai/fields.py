"""Fields a request sends beyond the ones Radiance reads: accepted, forwarded or refused.

Every field is honoured or refused, never silently dropped:

- fields that do not change the output (``user``, ``metadata``, ``store``, ...) are
  accepted on every engine;
- on an engine that renders prompts itself (llama.cpp) any other field Radiance does not
  read would change the output in a way it cannot honour, so it is a 400 naming it;
- a proxy engine (vLLM, an upstream server) gets the body as the client sent it,
  so engine-specific fields (vLLM's ``top_k``, ``min_p``, ...) reach it and it decides.

The chat template's own fields (``reasoning_effort``, ``chat_template_kwargs``, and vLLM's
``add_generation_prompt``/``continue_final_message`` prefill) are read by the request
Struct: a llama.cpp model's template gets them, a proxy engine the body as sent. The
legacy ``functions``/``function_call`` are refused with a hint to send ``tools``.

A field sent as ``null`` is a field not sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from appliance.errors import InvalidRequest

# Fields of OpenAI's request bodies that change nothing in what the model generates.
NO_EFFECT = frozenset(
    {
        "user",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
    }
)
# Fields whose only value Radiance serves is the one that asks for nothing.
_HARMLESS_VALUES: dict[str, tuple[Any, ...]] = {
    "modalities": (["text"],),
    "function_call": ("none",),
    "functions": ([],),
}
_SHOWN = 64  # characters of a client's field name quoted in an error or a log line


def shown(name: str) -> str:
    """A client-chosen name, bounded, for messages and logs."""
    return name if len(name) <= _SHOWN else name[:_SHOWN] + "…"


def unknown_fields(data: Mapping[str, Any], known: Iterable[str]) -> list[str]:
    """The fields of `data` the request Struct does not read, not null, in body order."""
    known = set(known)
    return [name for name, value in data.items() if name not in known and value is not None]


def refuse_unhonoured(fields: Iterable[str], data: Mapping[str, Any], model: str) -> None:
    """400 for the first field that would change the output of an in-process engine."""
    for name in fields:
        if name in NO_EFFECT or data.get(name) in _HARMLESS_VALUES.get(name, ()):
            continue
        hint = " (send `tools` instead)" if name in ("functions", "function_call") else ""
        raise InvalidRequest(
            f"the model `{model}` cannot honour the parameter `{shown(name)}`{hint}; leave it out",
            param=shown(name),
            code="unsupported_parameter",
        )
