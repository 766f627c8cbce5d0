"""Check a request's sampling fields against what the model declares, then build params.

A model answers only the parameters listed under its `parameters:` in radiance.yaml.
A field left at its default is always fine; any other value of an undeclared parameter
is a 400 that names it, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from appliance.config import SAMPLING_PARAMETERS
from appliance.errors import ContextLengthExceeded, InvalidRequest
from appliance.openai.protocol import ChatCompletionRequest, CompletionRequest, SamplingFields
from appliance.registry import ServedModel
from backends.base import Capabilities, SamplingParams

SEED_MASK = 0xFFFFFFFF  # llama.cpp seeds are 32-bit: any int seed maps onto one


def _is_default(name: str, value: Any) -> bool:
    defaults: dict[str, Callable[[Any], bool]] = {
        "temperature": lambda v: v is None or v == 1,
        "top_p": lambda v: v is None or v == 1,
        "n": lambda v: v is None or v == 1,
        "stop": lambda v: v is None or v == [] or v == "",
        "seed": lambda v: v is None,
        "max_tokens": lambda v: v is None,
        "logprobs": lambda v: v is None or v is False or v == 0,
        "top_logprobs": lambda v: v is None or v == 0,
        "response_format": lambda v: v is None or v.type == "text",
        "tools": lambda v: not v,
        "tool_choice": lambda v: v is None or v == "none",
        "frequency_penalty": lambda v: v is None or v == 0,
        "presence_penalty": lambda v: v is None or v == 0,
        "repetition_penalty": lambda v: v is None or v == 1,
        "logit_bias": lambda v: not v,
    }
    return defaults[name](value)


def check_declared(
    body: SamplingFields, served: ServedModel, caps: Capabilities, vocab_size: int | None
) -> None:
    """400 for a parameter the model does not declare or its engine cannot honour
    (`vocab_size` None: `logit_bias` ids are not checked here)."""
    declared = set(served.config.parameters)
    values: dict[str, Any] = {name: getattr(body, name, None) for name in SAMPLING_PARAMETERS}
    if isinstance(body, ChatCompletionRequest) and body.max_completion_tokens is not None:
        values["max_tokens"] = body.max_completion_tokens
    for name, value in values.items():
        if name not in declared and not _is_default(name, value):
            raise InvalidRequest(
                f"the model `{served.id}` does not accept the parameter `{name}`; "
                f"it accepts: {', '.join(sorted(declared)) or 'none'}",
                param=name,
                code="unsupported_parameter",
            )
    if values["logprobs"] not in (None, False, 0) and not caps.logprobs:
        raise InvalidRequest(f"the model `{served.id}` cannot return logprobs", param="logprobs")
    if body.logit_bias:
        logit_bias(body.logit_bias, vocab_size)


def logit_bias(
    biases: dict[str, float] | None, vocab_size: int | None
) -> tuple[tuple[int, float], ...]:
    """`logit_bias` as (token id, bias) pairs; 400 naming it for a key that is not a token
    id of the model (`vocab_size` None: the upstream checks the ids)."""
    pairs: dict[int, float] = {}
    for key, bias in (biases or {}).items():
        token = int(key) if key.isascii() and key.isdigit() and len(key) <= 10 else -1
        if token < 0 or (vocab_size is not None and token >= vocab_size):
            shown = key if len(key) <= 20 else key[:20] + "…"
            limit = f" 0 to {vocab_size - 1}" if vocab_size is not None else ""
            raise InvalidRequest(
                f"`logit_bias` keys are token ids{limit}; `{shown}` is not one",
                param="logit_bias",
            )
        pairs[token] = bias
    return tuple(pairs.items())


def stop_list(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    return tuple(s for s in stop if s)


def resolve_max_tokens(
    requested: int | None,
    prompt_tokens: int,
    served: ServedModel,
    param: str,
    cap: int | None = None,
) -> int:
    """The completion budget; 400 context_length_exceeded when prompt + budget won't fit.

    `cap` is the key's tier limit on max_tokens: the default stays under it, and an
    explicit value above it is refused.
    """
    limit = served.config.context_length
    if cap is not None and requested is not None and requested > cap:
        raise InvalidRequest(
            f"`{param}` is {requested}, but this API key's tier allows at most {cap}.",
            param=param,
            code="max_tokens_exceeded",
        )
    if requested is None:
        room = limit - prompt_tokens
        if room < 1:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {limit} tokens, and your prompt "
                f"has {prompt_tokens} tokens.",
                param=param,
            )
        default = served.config.default_max_tokens
        return min(x for x in (room, default, cap) if x is not None)
    if prompt_tokens + requested > limit:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt_tokens + requested} tokens ({prompt_tokens} in the prompt, {requested} "
            "for the completion). Please reduce the prompt or max_tokens.",
            param=param,
        )
    return requested


def sampling_params(
    body: SamplingFields,
    max_tokens: int,
    *,
    choice: int = 0,
    logprobs: bool = False,
    top_logprobs: int = 0,
    json_schema: dict[str, Any] | None = None,
    vocab_size: int | None = None,
) -> SamplingParams:
    """Params for one choice; choice i of a seeded request uses seed + i, so n>1 differs."""
    seed = None if body.seed is None else (body.seed + choice) & SEED_MASK
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=seed,
        stop=stop_list(body.stop),
        frequency_penalty=body.frequency_penalty or 0.0,
        presence_penalty=body.presence_penalty or 0.0,
        repetition_penalty=1.0 if body.repetition_penalty is None else body.repetition_penalty,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        logit_bias=logit_bias(body.logit_bias, vocab_size),
        json_schema=json_schema,
    )


def completion_logprobs(body: CompletionRequest) -> tuple[bool, int]:
    if body.logprobs is None:
        return False, 0
    return True, body.logprobs
