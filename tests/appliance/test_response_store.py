"""Stored responses in a real SQLite file: per key, expiring, chained by previous id."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from appliance.openai.responses_protocol import (
    InputText,
    OutputMessage,
    OutputText,
    Response,
    ResponseFormat,
    ResponseText,
    StoredMessage,
)
from appliance.state.database import open_database
from appliance.state.responses import MAX_CHAIN, ConversationTooLong, ResponseStore


def response(id: str, previous: str | None = None) -> Response:
    return Response(
        id=id,
        created_at=1,
        status="completed",
        model="m",
        output=[OutputMessage(id=f"msg_{id}", status="completed", content=[OutputText(text=id)])],
        previous_response_id=previous,
        text=ResponseText(format=ResponseFormat(type="text")),
    )


ITEMS = [StoredMessage(id="msg_in", role="user", content=[InputText(text="hi")])]


async def test_a_key_reads_its_own_until_it_expires(tmp_path: pathlib.Path) -> None:
    db = await open_database(tmp_path / "state.db")
    try:
        store = ResponseStore(db, retention_seconds=0.3)
        await store.add("alice", response("resp_1"), ITEMS)
        stored = await store.get("alice", "resp_1")
        assert stored is not None
        assert stored.response == response("resp_1") and stored.input_items == ITEMS
        assert await store.get("bob", "resp_1") is None
        assert not await store.delete("bob", "resp_1")
        await asyncio.sleep(0.4)
        assert await store.get("alice", "resp_1") is None
        assert not await store.delete("alice", "resp_1")
    finally:
        await db.close()


async def test_a_conversation_is_read_oldest_first_and_bounded(tmp_path: pathlib.Path) -> None:
    db = await open_database(tmp_path / "state.db")
    try:
        store = ResponseStore(db, retention_seconds=3600)
        previous = None
        for n in range(MAX_CHAIN + 1):
            await store.add("alice", response(f"resp_{n}", previous), ITEMS)
            previous = f"resp_{n}"
        chain = await store.conversation("alice", "resp_2")
        assert chain is not None
        assert [c.response.id for c in chain] == ["resp_0", "resp_1", "resp_2"]
        assert await store.conversation("bob", "resp_2") is None
        with pytest.raises(ConversationTooLong):
            await store.conversation("alice", f"resp_{MAX_CHAIN}")
        assert await store.delete("alice", "resp_1")
        assert await store.conversation("alice", "resp_2") is None  # a link is gone
    finally:
        await db.close()
