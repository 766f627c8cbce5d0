"""The events of a streamed Response, made from the chat stream that serves it.

They follow OpenAI's sequence: `response.created`, `response.in_progress`, per output
item `response.output_item.added`, its parts' deltas (`response.reasoning_text.delta`,
`response.output_text.delta`, `response.function_call_arguments.delta`) and their
`.done` events, `response.output_item.done`, then `response.completed` (or
`response.incomplete` when cut by `max_output_tokens`); an error after the start is an
`error` event followed by `response.failed`. Each event carries its `sequence_number`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from appliance.openai.responses_answer import ResponseShell, status_of
from appliance.openai.responses_protocol import (
    FunctionCall,
    ItemStatus,
    OutputItem,
    OutputMessage,
    OutputText,
    ReasoningItem,
    ReasoningText,
    Response,
    ResponseError,
    ResponseStreamEvent,
)
from appliance.openai.responses_request import new_item_id

Store = Callable[[Response], Awaitable[None]]


@dataclass(frozen=True, eq=False)  # compared and hashed by identity
class _TextKind:
    """An item made of one growing text part: a message's answer or a model's reasoning."""

    events: str  # `response.<events>.delta` and `.done`
    extra: dict[str, Any]  # what its delta and done events carry besides the text


_ANSWER = _TextKind("output_text", {"logprobs": []})
_REASONING = _TextKind("reasoning_text", {})


class ResponseEvents:
    """`aclose` closes the chat stream, which settles the request; `store` keeps the
    finished (or failed) Response when the request asked for it."""

    def __init__(self, shell: ResponseShell, chunks: AsyncIterator[bytes], store: Store) -> None:
        self._shell = shell
        self._chunks = chunks
        self._store = store
        self._sequence = 0
        self._output: list[OutputItem] = []
        self._texts: dict[_TextKind, OutputMessage | ReasoningItem] = {}
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
                failure = ResponseError(
                    code=str(error.get("code") or "server_error"),
                    message=str(error.get("message") or "the response failed"),
                )
                failed = shell.response("failed", self._output, self._usage, failure)
                await self._keep(failed)
                yield self._event(
                    "error", code=failure.code, message=failure.message, param=error.get("param")
                )
                yield self._event("response.failed", response=failed)
                return
            for event in self._chunk(payload):
                yield event
        for event in self._close_items():
            yield event
        status = status_of(self._finish)
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
        for kind, field in ((_REASONING, "reasoning_content"), (_ANSWER, "content")):
            text = delta.get(field)
            if isinstance(text, str) and text:
                events += self._text(kind, text)
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                events += self._call(call)
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]
        return events

    def _text(self, kind: _TextKind, text: str) -> list[bytes]:
        """`text` added to the item of its kind, which opens with its first text."""
        events = []
        item = self._texts.get(kind)
        if item is None:
            if kind is _ANSWER:
                item = OutputMessage(id=new_item_id("msg"), status="in_progress", content=[])
                item.content.append(OutputText(text=""))
            else:
                item = ReasoningItem(id=new_item_id("rs"), content=[], status="in_progress")
                item.content.append(ReasoningText(text=""))
            self._texts[kind] = item
            self._output.append(item)
            index = len(self._output) - 1
            events.append(self._event("response.output_item.added", output_index=index, item=item))
            events.append(self._part_event("added", item, index, _empty(item)))
        item.content[0].text += text
        events.append(
            self._event(
                f"response.{kind.events}.delta",
                item_id=item.id,
                output_index=self._output.index(item),
                content_index=0,
                delta=text,
                **kind.extra,
            )
        )
        return events

    def _part_event(
        self, what: str, item: OutputMessage | ReasoningItem, index: int, part: Any
    ) -> bytes:
        return self._event(
            f"response.content_part.{what}",
            item_id=item.id,
            output_index=index,
            content_index=0,
            part=part,
        )

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
        cut: ItemStatus = "incomplete" if status_of(self._finish) == "incomplete" else "completed"
        for index, item in enumerate(self._output):
            if isinstance(item, FunctionCall):
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
            else:
                kind = _ANSWER if isinstance(item, OutputMessage) else _REASONING
                item.status = cut if kind is _ANSWER else "completed"
                part = item.content[0]
                events.append(
                    self._event(
                        f"response.{kind.events}.done",
                        item_id=item.id,
                        output_index=index,
                        content_index=0,
                        text=part.text,
                        **kind.extra,
                    )
                )
                events.append(self._part_event("done", item, index, part))
            events.append(self._event("response.output_item.done", output_index=index, item=item))
        return events


def _empty(item: OutputMessage | ReasoningItem) -> OutputText | ReasoningText:
    return OutputText(text="") if isinstance(item, OutputMessage) else ReasoningText(text="")


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
