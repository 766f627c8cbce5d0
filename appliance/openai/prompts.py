"""The prompts of /v1/completions and the inputs of /v1/embeddings: text or token ids.

Both take a string, a list of strings, a list of token ids, or a list of those lists.
Token ids are checked against the model's vocabulary before anything reaches the engine
(llama.cpp aborts the whole process on an id it does not know) and are used as given,
never detokenized and tokenized again. Tokenizing runs off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from appliance.errors import InvalidRequest
from appliance.openai.protocol import MAX_INPUTS, PromptItem
from backends.base import Prompt, TokenEngine, UnknownToken, check_tokens


def items(raw: str | Sequence[PromptItem], param: str) -> list[str | list[int]]:
    """The separate prompts of a `prompt` or `input` field, at most MAX_INPUTS."""
    if isinstance(raw, str):
        return [raw]
    if all(isinstance(item, int) for item in raw):
        return [[int(t) for t in raw]]  # type: ignore[arg-type]
    if len(raw) > MAX_INPUTS:
        raise InvalidRequest(
            f"`{param}` holds {len(raw)} items; at most {MAX_INPUTS} are allowed", param=param
        )
    found: list[str | list[int]] = []
    for index, item in enumerate(raw):
        if isinstance(item, int):
            raise InvalidRequest(
                f"`{param}` mixes token ids and strings", param=f"{param}[{index}]"
            )
        found.append(item)
    return found


def check_ids(tokens: Sequence[int], vocab_size: int | None, param: str) -> None:
    """400 naming the first id outside the vocabulary (or negative, whatever the model)."""
    try:
        check_tokens(tokens, vocab_size if vocab_size is not None else 2**63)
    except UnknownToken as exc:
        known = f" (0 to {vocab_size - 1})" if vocab_size is not None else ""
        raise InvalidRequest(
            f"token id {exc.token} at `{param}[{list(tokens).index(exc.token)}]` is not in "
            f"the model's vocabulary{known}",
            param=param,
            code="invalid_token_id",
        ) from None


async def render(engine: TokenEngine, found: list[str | list[int]], param: str) -> list[Prompt]:
    """Each prompt with its tokens: text tokenized, ids checked (and their text decoded)."""
    vocab_size = engine.vocab_size
    for index, item in enumerate(found):
        if isinstance(item, list):
            check_ids(item, vocab_size, param if len(found) == 1 else f"{param}[{index}]")

    def work() -> list[Prompt]:
        prompts = []
        for item in found:
            if isinstance(item, str):
                prompts.append(engine.render_text(item))
            else:
                prompts.append(Prompt(engine.detokenize(item), tuple(item)))
        return prompts

    return await asyncio.to_thread(work)
