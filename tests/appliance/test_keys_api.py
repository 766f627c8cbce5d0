"""/v1/api-keys on a real server: the envelope, secrets shown once, revocation, budgets."""

from __future__ import annotations

import datetime
import sqlite3
from decimal import Decimal

import httpx
import openai
import pytest
from conftest import ADMIN, ALICE, RunningServer

AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


def api(server: RunningServer, method: str, path: str, **kwargs: object) -> httpx.Response:
    kwargs.setdefault("headers", AS_ADMIN)
    return httpx.request(method, f"{server.base_url}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]


def create(server: RunningServer, **body: object) -> dict[str, object]:
    reply = api(server, "POST", "/api-keys", json=body)
    assert reply.status_code == 201, reply.text
    data: dict[str, object] = reply.json()["data"]
    return data


def ask(server: RunningServer, secret: str, model: str = "tiny") -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
        timeout=60,
    )


def test_only_the_admin_key_manages_keys(server: RunningServer) -> None:
    no_key = api(server, "GET", "/api-keys", headers={})
    assert no_key.status_code == 401
    assert no_key.json()["code"] == "UNAUTHORIZED" and "error" in no_key.json()
    user = api(server, "GET", "/api-keys", headers={"Authorization": f"Bearer {ALICE}"})
    assert user.status_code == 403 and user.json()["code"] == "FORBIDDEN"
    assert set(user.json()) == {"error", "code", "details"}


def test_create_shows_the_secret_once_and_the_key_works(server: RunningServer) -> None:
    made = create(server, name="carol", tier="free", models=["spark"])
    secret = str(made["key"])
    assert secret.startswith(str(made["prefix"])) and len(str(made["prefix"])) < 12
    assert made["tier"] == "free" and made["models"] == ["spark"] and made["source"] == "api"
    reply = ask(server, secret, "spark")
    assert reply.status_code == 200
    assert ask(server, secret, "plain").status_code == 403
    listed = api(server, "GET", "/api-keys").json()
    assert secret not in str(listed)
    names = [k["name"] for k in listed["data"]]
    assert {"alice", "bob", "carol"} <= set(names)
    assert listed["pagination"]["total"] == len(names)
    declared = {k["name"]: k["source"] for k in listed["data"]}
    assert declared["alice"] == "config"
    carol = next(k for k in listed["data"] if k["name"] == "carol")
    usage = reply.json()["usage"]
    cost = (
        usage["prompt_tokens"] * Decimal("0.10") + usage["completion_tokens"] * Decimal("0.40")
    ) / 10**6
    assert carol["this_month"]["requests"] == 2  # the 200 and the refused 403
    assert Decimal(carol["this_month"]["cost"]) == cost
    one = api(server, "GET", f"/api-keys/{made['id']}").json()["data"]
    assert "key" not in one and one["last_used_at"] is not None
    # Stored only as a hash.
    with sqlite3.connect(server.database) as db:
        stored = db.execute("SELECT * FROM api_keys WHERE name = 'carol'").fetchone()
    assert secret not in str(stored)


def test_revoking_takes_effect_on_the_next_request(server: RunningServer) -> None:
    made = create(server, name="dave", tier="free")
    secret = str(made["key"])
    assert ask(server, secret).status_code == 200
    gone = api(server, "DELETE", f"/api-keys/{made['id']}")
    assert gone.status_code == 200 and gone.json()["data"]["status"] == "revoked"
    refused = ask(server, secret)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "revoked_api_key"


def test_pagination_and_errors_use_the_management_envelope(server: RunningServer) -> None:
    for name in ("p1", "p2", "p3"):
        create(server, name=name, tier="free")
    page = api(server, "GET", "/api-keys", params={"limit": 2, "offset": 1}).json()
    assert len(page["data"]) == 2
    assert page["pagination"]["limit"] == 2 and page["pagination"]["offset"] == 1
    assert page["pagination"]["hasMore"] is True
    missing = api(server, "GET", "/api-keys/key_nope")
    assert missing.status_code == 404 and missing.json()["code"] == "KEY_NOT_FOUND"
    taken = api(server, "POST", "/api-keys", json={"name": "p1", "tier": "free"})
    assert taken.status_code == 409 and taken.json()["code"] == "KEY_NAME_TAKEN"
    bad_tier = api(server, "POST", "/api-keys", json={"name": "p9", "tier": "gold"})
    assert bad_tier.status_code == 400 and bad_tier.json()["details"]["tiers"] == ["free"]
    typo = api(server, "POST", "/api-keys", json={"name": "p9", "teir": "free"})
    assert typo.status_code == 400 and "teir" in typo.json()["error"]
    bad_limit = api(server, "GET", "/api-keys", params={"limit": "lots"})
    assert bad_limit.status_code == 400 and bad_limit.json()["code"] == "VALIDATION_ERROR"
    past = api(
        server, "POST", "/api-keys", json={"name": "p9", "expires_at": "2001-01-01T00:00:00Z"}
    )
    assert past.status_code == 400


def test_declared_keys_cannot_be_changed_through_the_api(server: RunningServer) -> None:
    alice = next(k for k in api(server, "GET", "/api-keys").json()["data"] if k["name"] == "alice")
    for method in ("DELETE", "PUT"):
        reply = api(server, method, f"/api-keys/{alice['id']}", json={"tier": "free"})
        assert reply.status_code == 409
        assert reply.json()["code"] == "KEY_DECLARED_IN_CONFIG"
        assert "radiance.yaml" in reply.json()["error"]
    assert ask(server, ALICE).status_code == 200


def test_update_changes_and_clears_fields(server: RunningServer) -> None:
    made = create(server, name="erin", tier="free", models=["plain"])
    later = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)).isoformat()
    changed = api(
        server,
        "PUT",
        f"/api-keys/{made['id']}",
        json={"models": None, "budget": {"usd": "5.50", "period": "day"}, "expires_at": later},
    ).json()["data"]
    assert changed["models"] is None and changed["tier"] == "free"
    assert changed["budget"] == {"usd": "5.50", "period": "day"}
    assert changed["expires_at"].startswith(later[:16])
    assert ask(server, str(made["key"]), "tiny").status_code == 200


def test_a_spent_budget_answers_insufficient_quota(server: RunningServer) -> None:
    # tiny costs 0.10 / 0.40 USD per 1M tokens: one request costs a few microdollars.
    made = create(server, name="frank", tier="free", budget={"usd": "0.000008", "period": "day"})
    client = openai.OpenAI(base_url=server.base_url, api_key=str(made["key"]), max_retries=0)
    hello = [{"role": "user", "content": "hi"}]
    # A request that could cost more than the whole budget is refused before it runs.
    with pytest.raises(openai.RateLimitError) as too_big:
        client.chat.completions.create(model="tiny", messages=hello, max_tokens=100)
    assert too_big.value.code == "insufficient_quota"
    assert "max_tokens" in too_big.value.message
    answered = 0
    refused: openai.RateLimitError | None = None
    for _ in range(10):  # until the budget is spent
        try:
            client.chat.completions.create(model="tiny", messages=hello, max_tokens=5)
        except openai.RateLimitError as exc:
            refused = exc
            break
        answered += 1
    assert answered >= 1 and refused is not None
    assert refused.code == "insufficient_quota"
    assert refused.response.headers["x-should-retry"] == "false"
    assert "budget of 0.000008 USD per day" in refused.message
    with sqlite3.connect(server.database) as db:
        (spent,) = db.execute(
            "SELECT SUM(cost_pusd) FROM requests WHERE key_name = 'frank'"
        ).fetchone()
    assert 0 < spent <= 8_000_000  # picodollars: never past the budget
