"""Server-sent events as OpenAI streams them: `data: {json}` lines, then `data: [DONE]`.

The request's lifecycle (`RequestContext.stream`) ends each stream: `[DONE]` after the
ledger row, or an error event."""

from __future__ import annotations

from typing import Any

import msgspec


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"
