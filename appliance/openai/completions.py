"""Serving the legacy /v1/completions: a prompt (or several) in, text choices out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from msgspec import UNSET, UnsetType

from appliance.errors import InvalidRequest
from appliance.openai import prompts
from appliance.openai.answers import (
    CompletionChoice,
    CompletionLogprobs,
    CompletionUsage,
    CreateCompletionResponse,
)
from appliance.openai.engine_calls import close_all, first_deltas
from appliance.openai.protocol import MAX_COMPLETION_RUNS, CompletionRequest
from appliance.openai.sampling import (
    check_declared,
    completion_logprobs,
    resolve_max_tokens,
    sampling_params,
)
from appliance.openai.sse import sse_event
from appliance.registry import ServedModel
from appliance.request_context import RequestContext
from backends.base import Delta, Prompt, SamplingParams, TokenEngine


@dataclass
class CompletionPlan:
    body: CompletionRequest
    served: ServedModel
    engine: TokenEngine  # the replica the request is served on
    runs: list[tuple[Prompt, SamplingParams]]
    created: int


async def plan_completion(
    body: CompletionRequest, served: ServedModel, engine: TokenEngine, ctx: RequestContext
) -> CompletionPlan:
    check_declared(body, served, engine.capabilities, engine.vocab_size)
    if body.suffix:
        raise InvalidRequest("`suffix` (fill-in-the-middle) is not supported", param="suffix")
    if body.best_of is not None and body.best_of != (body.n or 1):
        raise InvalidRequest("`best_of` other than `n` is not supported", param="best_of")
    logprobs, top = completion_logprobs(body)
    if logprobs and "logprobs" not in served.config.parameters:
        raise InvalidRequest(
            f"the model `{served.id}` does not accept the parameter `logprobs`",
            param="logprobs",
            code="unsupported_parameter",
        )
    found = prompts.items(body.prompt, "prompt")
    if len(found) * (body.n or 1) > MAX_COMPLETION_RUNS:
        raise InvalidRequest(
            f"{len(found)} prompts times n={body.n} is more than the {MAX_COMPLETION_RUNS} "
            "completions one request may ask for",
            param="n",
        )
    runs = []
    for prompt in await prompts.render(engine, found, "prompt"):
        ctx.prompt_tokens += len(prompt.tokens)
        max_tokens = resolve_max_tokens(
            body.max_tokens or 16, len(prompt.tokens), served, "max_tokens", ctx.policy.max_tokens
        )
        for choice in range(body.n or 1):
            params = sampling_params(
                body,
                max_tokens,
                choice=choice,
                logprobs=logprobs,
                top_logprobs=top,
                vocab_size=engine.vocab_size,
            )
            runs.append((prompt, params))
    return CompletionPlan(body, served, engine, runs, int(time.time()))


def _logprobs(deltas: list[Delta], offset: int) -> CompletionLogprobs:
    tokens, token_logprobs, tops, offsets = [], [], [], []
    for delta in deltas:
        for lp in delta.logprobs:
            offsets.append(offset)
            offset += len(lp.token)
            tokens.append(lp.token)
            token_logprobs.append(lp.logprob)
            tops.append({t.token: t.logprob for t in lp.top})
    return CompletionLogprobs(
        tokens=tokens, token_logprobs=token_logprobs, top_logprobs=tops, text_offset=offsets
    )


def _choice(
    plan: CompletionPlan, index: int, deltas: list[Delta], finish: str | None
) -> CompletionChoice:
    prompt, params = plan.runs[index]
    echo = prompt.text if plan.body.echo else ""
    return CompletionChoice(
        index=index,
        text=echo + "".join(d.text for d in deltas),
        logprobs=_logprobs(deltas, len(echo)) if params.logprobs else None,
        finish_reason=_finish(finish),
    )


def _finish(reason: str | None) -> str | None:
    return None if reason is None else ("stop" if reason == "cancelled" else reason)


def _envelope(
    plan: CompletionPlan,
    ctx: RequestContext,
    choices: list[CompletionChoice],
    usage: CompletionUsage | UnsetType | None = UNSET,
) -> CreateCompletionResponse:
    return CreateCompletionResponse(
        id=f"cmpl-{ctx.id}",
        created=plan.created,
        model=plan.served.id,
        choices=choices,
        usage=usage,
    )


def _by_prompt(plan: CompletionPlan) -> list[tuple[Prompt, list[int]]]:
    """The runs of each prompt (its `n` choices), in order: each group is started at once,
    so an engine may evaluate the prompt once and decode its choices side by side."""
    groups: list[tuple[Prompt, list[int]]] = []
    for index, (prompt, _) in enumerate(plan.runs):
        if groups and groups[-1][0] is prompt:
            groups[-1][1].append(index)
        else:
            groups.append((prompt, [index]))
    return groups


async def _start(
    plan: CompletionPlan, prompt: Prompt, indices: list[int]
) -> list[AsyncIterator[Delta]]:
    return list(await first_deltas(plan.engine, prompt, [plan.runs[i][1] for i in indices]))


async def complete_text(plan: CompletionPlan, ctx: RequestContext) -> CreateCompletionResponse:
    choices: dict[int, CompletionChoice] = {}
    for prompt, indices in _by_prompt(plan):
        streams = await _start(plan, prompt, indices)
        try:
            for index, deltas in zip(indices, streams, strict=True):
                collected: list[Delta] = []
                finish = "length"
                async for delta in deltas:
                    ctx.add_tokens(delta.tokens)
                    collected.append(delta)
                    finish = delta.finish_reason or finish
                choices[index] = _choice(plan, index, collected, finish)
        finally:
            await close_all(streams)
    return _envelope(
        plan, ctx, [choices[i] for i in sorted(choices)], CompletionUsage(**ctx.usage())
    )


async def open_text_stream(plan: CompletionPlan, ctx: RequestContext) -> AsyncIterator[bytes]:
    groups = _by_prompt(plan)
    running = await _start(plan, *groups[0])  # errors before the first byte are a status
    return ctx.stream(_stream_text(plan, ctx, groups, running), close=lambda: close_all(running))


async def _stream_text(
    plan: CompletionPlan,
    ctx: RequestContext,
    groups: list[tuple[Prompt, list[int]]],
    running: list[AsyncIterator[Delta]],
) -> AsyncIterator[bytes]:
    """Each prompt's choices one after another (they decode together meanwhile);
    `running` holds the streams of the prompt under way, for the request's close."""
    include_usage = bool(plan.body.stream_options and plan.body.stream_options.include_usage)
    # Every chunk has `usage: null` when the last one brings the usage.
    pending: UnsetType | None = None if include_usage else UNSET
    for number, (prompt, indices) in enumerate(groups):
        if number:
            await close_all(running)
            running[:] = await _start(plan, prompt, indices)
        for index, deltas in zip(indices, list(running), strict=True):
            params = plan.runs[index][1]
            offset = 0  # where the next token stands in the whole text (as text_offset says)
            if plan.body.echo:
                yield sse_event(_envelope(plan, ctx, [_choice(plan, index, [], None)], pending))
                offset = len(prompt.text)
            async for delta in deltas:
                ctx.add_tokens(delta.tokens)
                if not (delta.text or delta.logprobs or delta.finish_reason):
                    continue
                choice = CompletionChoice(
                    index=index,
                    text=delta.text,
                    logprobs=_logprobs([delta], offset) if params.logprobs else None,
                    finish_reason=_finish(delta.finish_reason),
                )
                offset += sum(len(lp.token) for lp in delta.logprobs)
                yield sse_event(_envelope(plan, ctx, [choice], pending))
    if include_usage:
        yield sse_event(_envelope(plan, ctx, [], CompletionUsage(**ctx.usage())))
