"""Server-sent events as OpenAI streams them: `data: {json}` lines, then `data: [DONE]`.

Each event is one chunk (`answers.ChatCompletionStreamResponse`,
`answers.CreateCompletionResponse`), or an upstream's chunk of that shape. The request's
lifecycle (`RequestContext.stream`) ends each stream: `[DONE]` after the ledger row, or
an error event."""

from __future__ import annotations

from typing import Any

import msgspec


def sse_event(payload: msgspec.Struct | dict[str, Any]) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"
