"""Serving /v1/chat/completions: request → engine calls → OpenAI response or SSE chunks.

Knows nothing of Litestar: the controller hands it a decoded request and a
RequestContext, and gets back an answer Struct or an async iterator of SSE bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from appliance.errors import InvalidRequest
from appliance.openai.answer_reading import AnswerReader, answer_format, generic_schema
from appliance.openai.answers import (
    ChatChoice,
    ChatChoiceLogprobs,
    ChatCompletionResponseMessage,
    ChatCompletionStreamResponse,
    ChatCompletionTokenLogprob,
    ChatCompletionUsage,
    ChatStreamChoice,
    CompletionTokensDetails,
    CreateChatCompletionResponse,
)
from appliance.openai.answers import ChatCompletionStreamResponseDelta as MessageDelta
from appliance.openai.engine_calls import api_error, close_all, first_deltas, logprob_entry
from appliance.openai.protocol import ChatCompletionRequest, ChatMessage
from appliance.openai.sampling import check_declared, resolve_max_tokens, sampling_params
from appliance.openai.schema_bounds import check_schema, check_tools
from appliance.openai.sse import sse_event
from appliance.openai.tool_calls import ToolPlan, plan_tools
from appliance.openai.tool_formats import ToolFormat
from appliance.registry import ServedModel
from appliance.request_context import RequestContext
from backends.base import (
    Delta,
    EngineError,
    Prompt,
    SamplingParams,
    TokenEngine,
    UnsupportedRequest,
)


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


def _json_schema(
    body: ChatCompletionRequest, tools: ToolPlan, answers: ToolFormat, engine: TokenEngine
) -> dict[str, Any] | None:
    fmt = body.response_format
    if tools.mode == "auto" and answers.name in ("generic", "plain"):
        # No tool-call markup of the model's own: calls only through constrained output.
        plain_text = fmt is None or fmt.type == "text"
        if answers.name == "generic" and engine.capabilities.json_schema and plain_text:
            return generic_schema(tools)
        raise InvalidRequest(
            "this model has no tool-call format of its own (name one with `tool_parser:` in "
            'radiance.yaml), so tool_choice `auto` cannot be read; send `"required"` or a '
            "named function",
            param="tool_choice",
        )
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
    reader: AnswerReader
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
    answers = answer_format(served.config, engine.chat_template)
    schema = _json_schema(body, tools, answers, engine)
    messages = template_messages(body)
    prompt = await _render(body, engine, messages, listed)
    reader = AnswerReader(
        tools, answers, listed, prompt.text, inline=served.config.reasoning == "inline"
    )
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
    return ChatPlan(body, served, engine, prompt, tools, reader, choices, int(time.time()))


async def _render(
    body: ChatCompletionRequest,
    engine: TokenEngine,
    messages: list[dict[str, Any]],
    listed: list[dict[str, Any]] | None,
) -> Prompt:
    if body.continue_final_message:
        if body.add_generation_prompt:
            raise InvalidRequest(
                "`continue_final_message` needs `add_generation_prompt: false`",
                param="continue_final_message",
            )
        if body.messages[-1].role != "assistant":
            raise InvalidRequest(
                "`continue_final_message` continues a last message of role `assistant`",
                param="continue_final_message",
            )
    try:
        # Rendering a template over long messages and tokenizing it takes a while.
        return await asyncio.to_thread(
            engine.render_chat,
            messages,
            listed,
            add_generation_prompt=body.add_generation_prompt,
            continue_final_message=body.continue_final_message,
            template_kwargs=body.chat_template_kwargs,
            reasoning_effort=body.reasoning_effort,
        )
    except UnsupportedRequest as exc:
        raise api_error(exc) from exc
    except EngineError as exc:
        raise InvalidRequest(str(exc), param="messages") from exc


def _reasoning_tokens(engine: TokenEngine, reasoning: str) -> int:
    """How many tokens the model spent on ``reasoning`` (its text tokenized again)."""
    if not reasoning:
        return 0
    return max(0, len(engine.render_text(reasoning).tokens) - len(engine.render_text("").tokens))


def _usage(ctx: RequestContext, reasoning_tokens: int | None) -> ChatCompletionUsage:
    counts = ctx.usage()
    usage = ChatCompletionUsage(
        prompt_tokens=counts["prompt_tokens"],
        completion_tokens=counts["completion_tokens"],
        total_tokens=counts["total_tokens"],
    )
    if reasoning_tokens is not None:
        spent = min(reasoning_tokens, usage.completion_tokens)
        usage.completion_tokens_details = CompletionTokensDetails(reasoning_tokens=spent)
    return usage


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


def _finish(tools: ToolPlan, reason: str, calls: int) -> str:
    if reason == "cancelled":
        return "stop"
    if calls and reason == "stop" and tools.mode in ("auto", "required"):
        return "tool_calls"
    return reason


async def complete_chat(plan: ChatPlan, ctx: RequestContext) -> CreateChatCompletionResponse:
    streams = await first_deltas(plan.engine, plan.prompt, plan.choices)
    try:
        return await _complete_choices(plan, ctx, streams)
    finally:
        await close_all(streams)


async def _complete_choices(
    plan: ChatPlan, ctx: RequestContext, streams: Sequence[AsyncIterator[Delta]]
) -> CreateChatCompletionResponse:
    choices = []
    reasoning_tokens: int | None = None
    for index, (params, deltas) in enumerate(zip(plan.choices, streams, strict=True)):
        text: list[str] = []
        entries: list[ChatCompletionTokenLogprob] = []
        reason = "length"
        async for delta in deltas:
            ctx.add_tokens(delta.tokens)
            text.append(delta.text)
            entries.extend(logprob_entry(lp) for lp in delta.logprobs)
            reason = delta.finish_reason or reason
        reading = plan.reader.whole("".join(text))
        if reading.reasoning:
            spent = await asyncio.to_thread(_reasoning_tokens, plan.engine, reading.reasoning)
            reasoning_tokens = (reasoning_tokens or 0) + spent
        message = ChatCompletionResponseMessage(
            content=reading.content,
            tool_calls=reading.calls or msgspec.UNSET,
            reasoning_content=reading.reasoning or msgspec.UNSET,
        )
        choices.append(
            ChatChoice(
                index=index,
                message=message,
                logprobs=ChatChoiceLogprobs(content=entries) if params.logprobs else None,
                finish_reason=_finish(plan.tools, reason, len(reading.calls)),
            )
        )
    return CreateChatCompletionResponse(
        id=f"chatcmpl-{ctx.id}",
        created=plan.created,
        model=plan.served.id,
        choices=choices,
        usage=_usage(ctx, reasoning_tokens),
    )


async def open_chat_stream(plan: ChatPlan, ctx: RequestContext) -> AsyncIterator[bytes]:
    """Start the choices together (so queue and engine errors surface as HTTP errors), then
    stream them one after another."""
    streams = await first_deltas(plan.engine, plan.prompt, plan.choices)
    return ctx.stream(_stream_chat(plan, ctx, streams), close=lambda: close_all(streams))


async def _stream_chat(
    plan: ChatPlan, ctx: RequestContext, streams: Sequence[AsyncIterator[Delta]]
) -> AsyncIterator[bytes]:
    reasoning: list[str] = []
    for index, (params, deltas) in enumerate(zip(plan.choices, streams, strict=True)):
        async for chunk in _choice_chunks(plan, ctx, index, params, deltas, reasoning):
            yield sse_event(chunk)
    if plan.body.stream_options and plan.body.stream_options.include_usage:
        spent = None
        texts = [text for text in reasoning if text]  # one per choice that reasoned
        if texts:
            counts = [await asyncio.to_thread(_reasoning_tokens, plan.engine, t) for t in texts]
            spent = sum(counts)
        final = _chunk(plan, ctx, [])
        final.usage = _usage(ctx, spent)
        yield sse_event(final)


async def _choice_chunks(
    plan: ChatPlan,
    ctx: RequestContext,
    index: int,
    params: SamplingParams,
    deltas: AsyncIterator[Delta],
    reasoning: list[str],
) -> AsyncIterator[ChatCompletionStreamResponse]:
    """One choice's chunks; its reasoning text is appended to ``reasoning``."""

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
    # Log-probabilities ride on the next chunk sent: text the format holds back (it may
    # open a call) sends its tokens' entries with the chunk that finally carries it.
    stream = plan.reader.stream()
    pending: list[ChatCompletionTokenLogprob] = []
    reason = "length"
    try:
        async for delta in deltas:
            ctx.add_tokens(delta.tokens)
            reason = delta.finish_reason or reason
            pending.extend(logprob_entry(lp) for lp in delta.logprobs)
            for message in stream.feed(delta.text):
                yield choice(message, pending)
                pending = []
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]
    for message in stream.finish():
        yield choice(message, pending)
        pending = []
    if pending:
        yield choice(MessageDelta(content=""), pending)
    reasoning.append("".join(stream.reasoning))
    yield choice(MessageDelta(), None, _finish(plan.tools, reason, stream.calls))
