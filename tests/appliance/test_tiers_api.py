"""/v1/tiers: the declared tiers for the console's "change tier" action; admin only."""

from __future__ import annotations

import httpx
from conftest import ADMIN, ALICE, RunningServer


def test_tiers_lists_the_declared_tiers_to_the_admin_only(server: RunningServer) -> None:
    url = f"{server.base_url}/tiers"
    reply = httpx.get(url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    assert reply.status_code == 200
    body = reply.json()
    assert body["data"] == [
        {
            "name": "free",
            "rpm": 1000,
            "tpm": 1000000,
            "concurrency": None,
            "max_tokens": None,
            "models": None,
        }
    ]
    assert body["message"] == "1 tier"
    user = httpx.get(url, headers={"Authorization": f"Bearer {ALICE}"}, timeout=30)
    assert user.status_code == 403 and user.json()["code"] == "FORBIDDEN"
    assert httpx.get(url, timeout=30).status_code == 401
