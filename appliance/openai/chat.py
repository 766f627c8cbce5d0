"""Serving /v1/chat/completions: request → engine calls → OpenAI response or SSE chunks.

Knows nothing of Litestar: the controller hands it a decoded request and a
RequestContext, and gets back an answer Struct or an async iterator of SSE bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec

from appliance.errors import InvalidRequest
from appliance.openai.answers import (
    ChatChoice,
    ChatChoiceLogprobs,
    ChatCompletionMessageToolCall,
    ChatCompletionMessageToolCallChunk,
    ChatCompletionResponseMessage,
    ChatCompletionStreamResponse,
    ChatCompletionTokenLogprob,
    ChatStreamChoice,
    CompletionUsage,
    CreateChatCompletionResponse,
)
from appliance.openai.answers import ChatCompletionStreamResponseDelta as MessageDelta
from appliance.openai.engine_calls import first_delta, logprob_entry
from appliance.openai.protocol import ChatCompletionRequest, ChatMessage
from appliance.openai.sampling import check_declared, resolve_max_tokens, sampling_params
from appliance.openai.schema_bounds import check_schema, check_tools
from appliance.openai.sse import sse_event
from appliance.openai.tool_calls import OPEN_TAG, ToolPlan, plan_tools
from appliance.registry import ServedModel
from appliance.request_context import RequestContext
from backends.base import Delta, EngineError, Prompt, SamplingParams, TokenEngine


def _content_text(message: ChatMessage, index: int) -> str | None:
    content = message.content
    if content is None or isinstance(content, str):
        return content
    parts = []
    for number, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise InvalidRequest(
                f"content parts of type `{part.type}` are not supported; send text parts",
                param=f"messages[{index}].content[{number}]",
            )
        parts.append(part.text)
    return "".join(parts)


def template_messages(body: ChatCompletionRequest) -> list[dict[str, Any]]:
    """Messages in the shape chat templates expect (Hugging Face conventions)."""
    rendered = []
    for index, message in enumerate(body.messages):
        item: dict[str, Any] = {
            "role": "system" if message.role == "developer" else message.role,
            "content": _content_text(message, index),
        }
        if message.role != "assistant" and item["content"] is None:
            raise InvalidRequest(
                f"a `{message.role}` message needs content", param=f"messages[{index}].content"
            )
        if message.name is not None:
            item["name"] = message.name
        if message.tool_calls:
            item["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
                for call in message.tool_calls
            ]
        if message.tool_call_id is not None:
            item["tool_call_id"] = message.tool_call_id
        rendered.append(item)
    return rendered


def _json_schema(body: ChatCompletionRequest, tools: ToolPlan) -> dict[str, Any] | None:
    fmt = body.response_format
    if tools.constrained:
        if fmt is not None and fmt.type != "text":
            raise InvalidRequest(
                "response_format cannot be combined with a forced tool_choice",
                param="response_format",
            )
        return tools.json_schema()
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {}
    if fmt.json_schema is None or fmt.json_schema.schema is None:
        raise InvalidRequest(
            "response_format of type json_schema needs `json_schema.schema`",
            param="response_format.json_schema",
        )
    check_schema(fmt.json_schema.schema, "response_format.json_schema.schema")
    return fmt.json_schema.schema


@dataclass
class ChatPlan:
    body: ChatCompletionRequest
    served: ServedModel
    engine: TokenEngine  # the replica the request is served on
    prompt: Prompt
    tools: ToolPlan
    choices: list[SamplingParams]
    created: int


async def plan_chat(
    body: ChatCompletionRequest, served: ServedModel, engine: TokenEngine, ctx: RequestContext
) -> ChatPlan:
    """Validate and render everything before the first byte of the answer."""
    check_declared(body, served, engine.capabilities, engine.vocab_size)
    if body.top_logprobs and not body.logprobs:
        raise InvalidRequest("`top_logprobs` needs `logprobs: true`", param="top_logprobs")
    tools = plan_tools(body)
    listed = [msgspec.to_builtins(t) for t in tools.tools] if tools.mode != "none" else None
    if listed:
        check_tools(listed)
    schema = _json_schema(body, tools)
    messages = template_messages(body)
    try:
        # Rendering a template over long messages and tokenizing it takes a while.
        prompt = await asyncio.to_thread(engine.render_chat, messages, listed)
    except EngineError as exc:
        raise InvalidRequest(str(exc), param="messages") from exc
    ctx.prompt_tokens = len(prompt.tokens)
    requested = body.max_completion_tokens or body.max_tokens
    param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    max_tokens = resolve_max_tokens(
        requested, len(prompt.tokens), served, param, ctx.policy.max_tokens
    )
    choices = [
        sampling_params(
            body,
            max_tokens,
            choice=i,
            logprobs=bool(body.logprobs),
            top_logprobs=body.top_logprobs or 0,
            json_schema=schema,
            vocab_size=engine.vocab_size,
        )
        for i in range(body.n or 1)
    ]
    return ChatPlan(body, served, engine, prompt, tools, choices, int(time.time()))


def _chunk(
    plan: ChatPlan, ctx: RequestContext, choices: list[ChatStreamChoice]
) -> ChatCompletionStreamResponse:
    include_usage = plan.body.stream_options and plan.body.stream_options.include_usage
    return ChatCompletionStreamResponse(
        id=f"chatcmpl-{ctx.id}",
        created=plan.created,
        model=plan.served.id,
        choices=choices,
        usage=None if include_usage else msgspec.UNSET,
    )


def _finish(tools: ToolPlan, reason: str, calls: list[ChatCompletionMessageToolCall]) -> str:
    if reason == "cancelled":
        return "stop"
    if calls and reason == "stop" and tools.mode in ("auto", "required"):
        return "tool_calls"
    return reason


async def complete_chat(plan: ChatPlan, ctx: RequestContext) -> CreateChatCompletionResponse:
    choices = []
    for index, params in enumerate(plan.choices):
        deltas = await first_delta(plan.engine, plan.prompt, params)
        text: list[str] = []
        entries: list[ChatCompletionTokenLogprob] = []
        reason = "length"
        async for delta in deltas:
            ctx.add_tokens(delta.tokens)
            text.append(delta.text)
            entries.extend(logprob_entry(lp) for lp in delta.logprobs)
            reason = delta.finish_reason or reason
        content, calls = plan.tools.parse("".join(text))
        message = ChatCompletionResponseMessage(
            content=content, tool_calls=calls if calls else msgspec.UNSET
        )
        choices.append(
            ChatChoice(
                index=index,
                message=message,
                logprobs=ChatChoiceLogprobs(content=entries) if params.logprobs else None,
                finish_reason=_finish(plan.tools, reason, calls),
            )
        )
    return CreateChatCompletionResponse(
        id=f"chatcmpl-{ctx.id}",
        created=plan.created,
        model=plan.served.id,
        choices=choices,
        usage=CompletionUsage(**ctx.usage()),
    )


async def open_chat_stream(plan: ChatPlan, ctx: RequestContext) -> AsyncIterator[bytes]:
    """Start the first choice (so queue and engine errors surface as HTTP errors), then stream."""
    first = await first_delta(plan.engine, plan.prompt, plan.choices[0])
    return ctx.stream(_stream_chat(plan, ctx, first), close=first.aclose)


async def _stream_chat(
    plan: ChatPlan, ctx: RequestContext, first: AsyncIterator[Delta]
) -> AsyncIterator[bytes]:
    for index, params in enumerate(plan.choices):
        deltas = first if index == 0 else await first_delta(plan.engine, plan.prompt, params)
        async for chunk in _choice_chunks(plan, ctx, index, params, deltas):
            yield sse_event(chunk)
    if plan.body.stream_options and plan.body.stream_options.include_usage:
        final = _chunk(plan, ctx, [])
        final.usage = CompletionUsage(**ctx.usage())
        yield sse_event(final)


async def _choice_chunks(
    plan: ChatPlan,
    ctx: RequestContext,
    index: int,
    params: SamplingParams,
    deltas: AsyncIterator[Delta],
) -> AsyncIterator[ChatCompletionStreamResponse]:
    def choice(
        delta: MessageDelta,
        logprobs: list[ChatCompletionTokenLogprob] | None = None,
        finish: str | None = None,
    ) -> ChatCompletionStreamResponse:
        item = ChatStreamChoice(
            index=index,
            delta=delta,
            logprobs=ChatChoiceLogprobs(content=logprobs or []) if params.logprobs else None,
            finish_reason=finish,
        )
        return _chunk(plan, ctx, [item])

    yield choice(MessageDelta(role="assistant", content=""))
    # Forced tool calls arrive whole at the end; under `auto`, text that may open a
    # <tool_call> block is held until it is clear whether it does.
    buffering = plan.tools.constrained or plan.tools.mode == "auto"
    held: list[str] = []
    held_logprobs: list[ChatCompletionTokenLogprob] = []
    reason = "length"
    try:
        async for delta in deltas:
            ctx.add_tokens(delta.tokens)
            reason = delta.finish_reason or reason
            entries = [logprob_entry(lp) for lp in delta.logprobs]
            if buffering:
                held.append(delta.text)
                held_logprobs.extend(entries)
                so_far = "".join(held).lstrip()
                if plan.tools.constrained or OPEN_TAG.startswith(so_far[: len(OPEN_TAG)]):
                    continue
                buffering = False
                yield choice(MessageDelta(content="".join(held)), held_logprobs)
                held, held_logprobs = [], []
                continue
            if delta.text or entries:
                yield choice(MessageDelta(content=delta.text), entries)
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]
    calls: list[ChatCompletionMessageToolCall] = []
    if held:
        content, calls = plan.tools.parse("".join(held))
        if calls:
            chunks = [
                ChatCompletionMessageToolCallChunk(
                    index=i, id=call.id, type=call.type, function=call.function
                )
                for i, call in enumerate(calls)
            ]
            yield choice(MessageDelta(tool_calls=chunks), held_logprobs)
        elif content:
            yield choice(MessageDelta(content=content), held_logprobs)
    yield choice(MessageDelta(), None, _finish(plan.tools, reason, calls))
