"""A chat completion's answer as a Response: the whole object, or the events of a stream.

Both engines' chat answers come here the same way (a chat.completion object, or its SSE
chunks), so whatever served the request, the Response is built by this one module.
Streams follow OpenAI's event sequence: `response.created`, `response.in_progress`, per
output item `response.output_item.added`, its content or arguments deltas and their
`.done` events, `response.output_item.done`, then `response.completed` (or
`response.incomplete` when cut by `max_output_tokens`); an error after the start is an
`error` event followed by `response.failed`. Each event carries its `sequence_number`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from appliance.openai.responses_protocol import (
    FunctionCall,
    IncompleteDetails,
    OutputItem,
    OutputMessage,
    OutputText,
    OutputTokensDetails,
    ReasoningItem,
    ReasoningText,
    Response,
    ResponseError,
    ResponseStreamEvent,
    ResponseUsage,
    Status,
)
from appliance.openai.responses_request import ResponsePlan, new_item_id


@dataclass
class ResponseShell:
    """What every state of one response shares: its request, id, model and start."""

    plan: ResponsePlan
    id: str
    model: str
    created_at: int = field(default_factory=lambda: int(time.time()))

    def response(
        self,
        status: Status,
        output: list[OutputItem],
        usage: dict[str, Any] | None = None,
        error: ResponseError | None = None,
    ) -> Response:
        request = self.plan.request
        done = status in ("completed", "incomplete", "failed")
        return Response(
            id=self.id,
            created_at=self.created_at,
            completed_at=int(time.time()) if status == "completed" else None,
            status=status,
            error=error,
            incomplete_details=(
                IncompleteDetails(reason="max_output_tokens") if status == "incomplete" else None
            ),
            instructions=request.instructions,
            max_output_tokens=request.max_output_tokens,
            model=self.model,
            output=output,
            output_text="".join(
                part.text
                for item in output
                if isinstance(item, OutputMessage)
                for part in item.content
            ),
            parallel_tool_calls=request.parallel_tool_calls is not False,
            previous_response_id=request.previous_response_id,
            store=self.plan.store,
            temperature=request.temperature,
            text=self.plan.text(),
            tool_choice=self.plan.tool_choice(),
            tools=self.plan.tools(),
            top_p=request.top_p,
            usage=_usage(usage) if done and usage is not None else None,
            user=request.user,
            metadata=dict(request.metadata or {}),
        )


def _usage(usage: dict[str, Any]) -> ResponseUsage:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    details = usage.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return ResponseUsage(
        input_tokens=prompt,
        output_tokens=completion,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=int(reasoning or 0)),
        total_tokens=prompt + completion,
    )


def _status(finish_reason: Any) -> Status:
    return "incomplete" if finish_reason == "length" else "completed"


def whole_response(shell: ResponseShell, completion: dict[str, Any]) -> Response:
    """A non-streamed chat.completion as the Response."""
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    status = _status(choice.get("finish_reason"))
    output: list[OutputItem] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        output.append(ReasoningItem(id=new_item_id("rs"), content=[ReasoningText(text=reasoning)]))
    content = message.get("content")
    calls = message.get("tool_calls") or []
    if isinstance(content, str) and (content or not calls):
        item_status: ItemStatus = "incomplete" if status == "incomplete" else "completed"
        output.append(
            OutputMessage(
                id=new_item_id("msg"), status=item_status, content=[OutputText(text=content)]
            )
        )
    for call in calls:
        function = call.get("function") or {}
        output.append(
            FunctionCall(
                id=new_item_id("fc"),
                call_id=str(call.get("id") or new_item_id("call")),
                name=str(function.get("name") or ""),
                arguments=str(function.get("arguments") or ""),
                status="completed",
            )
        )
    return shell.response(status, output, completion.get("usage"))


ItemStatus = Literal["in_progress", "completed", "incomplete"]
Store = Callable[[Response], Awaitable[None]]


class ResponseEvents:
    """The events of a streamed Response, made from the chat stream that serves it.

    `aclose` closes the chat stream, which settles the request; `store` keeps the
    finished (or failed) Response when the request asked for it."""

    def __init__(self, shell: ResponseShell, chunks: AsyncIterator[bytes], store: Store) -> None:
        self._shell = shell
        self._chunks = chunks
        self._store = store
        self._sequence = 0
        self._output: list[OutputItem] = []
        self._message: OutputMessage | None = None
        self._thought: ReasoningItem | None = None
        self._calls: dict[int, FunctionCall] = {}  # by the chat delta's tool call index
        self._finish: Any = None
        self._usage: dict[str, Any] | None = None
        self._events = self._run()

    def __aiter__(self) -> ResponseEvents:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        return self._events.__anext__()

    async def aclose(self) -> None:
        try:
            await self._events.aclose()
        finally:
            closer = getattr(self._chunks, "aclose", None)
            if closer is not None:
                await closer()

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = ResponseStreamEvent(type=kind, sequence_number=self._sequence, **fields)
        self._sequence += 1
        data = msgspec.json.encode(payload)
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    async def _run(self) -> AsyncGenerator[bytes, None]:
        shell = self._shell
        started = shell.response("in_progress", [])
        yield self._event("response.created", response=started)
        yield self._event("response.in_progress", response=started)
        async for payload in _sse_payloads(self._chunks):
            if payload is None:  # [DONE]
                break
            error = payload.get("error")
            if isinstance(error, dict):
                failed = self._failed(error)
                await self._keep(failed)
                yield self._event(
                    "error",
                    code=failed.error.code if failed.error else None,
                    message=failed.error.message if failed.error else "",
                    param=error.get("param"),
                )
                yield self._event("response.failed", response=failed)
                return
            for event in self._chunk(payload):
                yield event
        for event in self._close_items():
            yield event
        status = _status(self._finish)
        final = shell.response(status, self._output, self._usage)
        await self._keep(final)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        yield self._event(kind, response=final)

    async def _keep(self, response: Response) -> None:
        if self._shell.plan.store:
            await self._store(response)

    def _chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        events: list[bytes] = []
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return events
        choice = choices[0]
        if choice.get("index", 0) != 0:
            return events  # Responses have one answer
        delta = choice.get("delta") or {}
        thought = delta.get("reasoning_content")
        if isinstance(thought, str) and thought:
            events += self._reasoning(thought)
        text = delta.get("content")
        if isinstance(text, str) and text:
            events += self._text(text)
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                events += self._call(call)
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]
        return events

    def _text(self, text: str) -> list[bytes]:
        events = []
        message = self._message
        if message is None:
            message = OutputMessage(id=new_item_id("msg"), status="in_progress", content=[])
            self._message = message
            self._output.append(message)
            index = len(self._output) - 1
            events.append(
                self._event("response.output_item.added", output_index=index, item=message)
            )
            message.content.append(OutputText(text=""))
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=message.id,
                    output_index=index,
                    content_index=0,
                    part=OutputText(text=""),
                )
            )
        message.content[0].text += text
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=message.id,
                output_index=self._output.index(message),
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _reasoning(self, text: str) -> list[bytes]:
        events = []
        item = self._thought
        if item is None:
            item = ReasoningItem(id=new_item_id("rs"), content=[], status="in_progress")
            self._thought = item
            self._output.append(item)
            index = len(self._output) - 1
            events.append(self._event("response.output_item.added", output_index=index, item=item))
            item.content.append(ReasoningText(text=""))
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item.id,
                    output_index=index,
                    content_index=0,
                    part=ReasoningText(text=""),
                )
            )
        item.content[0].text += text
        events.append(
            self._event(
                "response.reasoning_text.delta",
                item_id=item.id,
                output_index=self._output.index(item),
                content_index=0,
                delta=text,
            )
        )
        return events

    def _call(self, delta: dict[str, Any]) -> list[bytes]:
        events = []
        index = delta.get("index", len(self._calls))
        function = delta.get("function") or {}
        call = self._calls.get(index)
        if call is None:
            call = FunctionCall(
                id=new_item_id("fc"),
                call_id=str(delta.get("id") or new_item_id("call")),
                name=str(function.get("name") or ""),
                arguments="",
                status="in_progress",
            )
            self._calls[index] = call
            self._output.append(call)
            events.append(
                self._event(
                    "response.output_item.added", output_index=len(self._output) - 1, item=call
                )
            )
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            call.arguments += fragment
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=call.id,
                    output_index=self._output.index(call),
                    delta=fragment,
                )
            )
        return events

    def _close_items(self) -> list[bytes]:
        events = []
        status: ItemStatus = "incomplete" if _status(self._finish) == "incomplete" else "completed"
        for index, item in enumerate(self._output):
            if isinstance(item, OutputMessage):
                part = item.content[0]
                item.status = status
                events.append(
                    self._event(
                        "response.output_text.done",
                        item_id=item.id,
                        output_index=index,
                        content_index=0,
                        text=part.text,
                        logprobs=[],
                    )
                )
                events.append(
                    self._event(
                        "response.content_part.done",
                        item_id=item.id,
                        output_index=index,
                        content_index=0,
                        part=part,
                    )
                )
            elif isinstance(item, ReasoningItem):
                thought = item.content[0]
                item.status = "completed"
                events.append(
                    self._event(
                        "response.reasoning_text.done",
                        item_id=item.id,
                        output_index=index,
                        content_index=0,
                        text=thought.text,
                    )
                )
                events.append(
                    self._event(
                        "response.content_part.done",
                        item_id=item.id,
                        output_index=index,
                        content_index=0,
                        part=thought,
                    )
                )
            else:
                item.status = "completed"
                events.append(
                    self._event(
                        "response.function_call_arguments.done",
                        item_id=item.id,
                        output_index=index,
                        name=item.name,
                        arguments=item.arguments,
                    )
                )
            events.append(self._event("response.output_item.done", output_index=index, item=item))
        return events

    def _failed(self, error: dict[str, Any]) -> Response:
        code = str(error.get("code") or "server_error")
        message = str(error.get("message") or "the response failed")
        failure = ResponseError(code=code, message=message)
        return self._shell.response("failed", self._output, self._usage, failure)


async def _sse_payloads(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any] | None]:
    """The JSON objects of an SSE byte stream (`data: {...}` events); None for `[DONE]`."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    yield None
                    continue
                try:
                    payload = msgspec.json.decode(data)
                except msgspec.DecodeError:
                    continue
                if isinstance(payload, dict):
                    yield payload
