"""Server-sent events as OpenAI streams them: `data: {json}` lines, then `data: [DONE]`."""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.errors import ApiError, envelope

DONE = b"data: [DONE]\n\n"


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


def stream_error(error: ApiError) -> bytes:
    """An error after the stream began: one error event, then the end of the stream."""
    return sse_event(envelope(error)) + DONE
