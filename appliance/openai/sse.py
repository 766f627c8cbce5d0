"""Server-sent events as OpenAI streams them: `data: {json}` lines, then `data: [DONE]`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from appliance.errors import ApiError, InternalError, envelope
from appliance.request_context import RequestContext

log = logging.getLogger(__name__)
DONE = b"data: [DONE]\n\n"


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


def stream_error(error: ApiError) -> bytes:
    """An error after the stream began: one error event, then the end of the stream."""
    return sse_event(envelope(error)) + DONE


async def account_stream(ctx: RequestContext, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Forward a response's events and write its one ledger row, however the stream ends.

    A finished stream is recorded before `[DONE]` is sent; an error after the first byte
    becomes an error event; a client that goes away leaves a `cancelled` row with the
    tokens generated until then.
    """
    status = "cancelled"
    try:
        async for event in events:
            yield event
        status = "ok"
        await ctx.finish()
        yield DONE
    except ApiError as exc:
        status = "error"
        await ctx.fail(exc)
        yield stream_error(exc)
    except Exception:
        status = "error"
        log.exception("request %s failed in the server mid-stream", ctx.id)
        error = InternalError("the server failed while streaming this answer")
        await ctx.fail(error)
        yield stream_error(error)
    finally:
        if status == "cancelled":
            await ctx.finish("cancelled", 499)
