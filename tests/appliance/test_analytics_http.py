"""Analytics and billing over HTTP on a real server of their own: the numbers must equal the
usage the clients were told, and only the admin key may read everyone's."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from conftest import ADMIN, ALICE, BOB, RunningServer, config_text, start_server

TINY_PRICES = (Decimal("0.10"), Decimal("0.40"))  # USD per 1M tokens, from config_text


@dataclass
class Told:
    """What the server told one key about its usage, per model."""

    requests: dict[str | None, int] = field(default_factory=dict)
    prompt: dict[str, int] = field(default_factory=dict)
    completion: dict[str, int] = field(default_factory=dict)

    def add(self, model: str | None, prompt: int = 0, completion: int = 0) -> None:
        self.requests[model] = self.requests.get(model, 0) + 1
        if model is not None:
            self.prompt[model] = self.prompt.get(model, 0) + prompt
            self.completion[model] = self.completion.get(model, 0) + completion

    def cost(self) -> Decimal:
        """Only `tiny` has prices."""
        p, c = self.prompt.get("tiny", 0), self.completion.get("tiny", 0)
        return (p * TINY_PRICES[0] + c * TINY_PRICES[1]) / 1_000_000


@dataclass
class Traffic:
    server: RunningServer
    alice: Told
    bob: Told

    def get(self, path: str, auth: str | None = ADMIN, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {auth}"} if auth else {}
        return httpx.get(f"{self.server.base_url}{path}", headers=headers, params=params)

    def data(self, path: str, auth: str | None = ADMIN, **params: Any) -> Any:
        reply = self.get(path, auth, **params)
        assert reply.status_code == 200, reply.text
        return reply.json()["data"]


def ask(client: openai.OpenAI, told: Told, model: str, max_tokens: int) -> None:
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Count to ten."}],
        max_tokens=max_tokens,
    )
    assert reply.usage is not None
    told.add(reply.model, reply.usage.prompt_tokens, reply.usage.completion_tokens)


@pytest.fixture(scope="module")
def traffic(
    tmp_path_factory: pytest.TempPathFactory, models_dir: pathlib.Path
) -> Iterator[Traffic]:
    server = start_server(tmp_path_factory.mktemp("analytics"), config_text(models_dir))
    alice, bob = Told(), Told()
    try:
        as_alice = openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0)
        as_bob = openai.OpenAI(base_url=server.base_url, api_key=BOB, max_retries=0)
        ask(as_alice, alice, "tiny", 8)
        ask(as_alice, alice, "spark", 5)  # an alias of tiny
        ask(as_alice, alice, "plain", 6)  # free
        ask(as_bob, bob, "tiny", 12)
        with pytest.raises(openai.NotFoundError):
            as_bob.chat.completions.create(
                model="nope", messages=[{"role": "user", "content": "hi"}], max_tokens=3
            )
        bob.add(None)
        yield Traffic(server, alice, bob)
    finally:
        server.stop()


def test_usage_by_key_and_model_equals_what_clients_were_told(traffic: Traffic) -> None:
    by_key = {
        row["key"]: row for row in traffic.data("/analytics/usage", timeframe="1h", group_by="key")
    }
    assert set(by_key) == {"alice", "bob"}
    for name, told in (("alice", traffic.alice), ("bob", traffic.bob)):
        row = by_key[name]
        assert row["requests"] == sum(told.requests.values())
        assert row["prompt_tokens"] == sum(told.prompt.values())
        assert row["completion_tokens"] == sum(told.completion.values())
        assert row["total_tokens"] == row["prompt_tokens"] + row["completion_tokens"]
        assert row["model"] is None and row["day"] is None
    by_model = {row["model"]: row for row in traffic.data("/analytics/usage", group_by="model")}
    assert set(by_model) == {"tiny", "plain", None}
    tiny = by_model["tiny"]
    assert tiny["requests"] == 3
    assert tiny["prompt_tokens"] == traffic.alice.prompt["tiny"] + traffic.bob.prompt["tiny"]
    assert by_model[None]["requests"] == 1 and by_model[None]["total_tokens"] == 0
    (today,) = traffic.data("/analytics/usage", timeframe="1h", group_by="day")
    assert today["requests"] == sum(traffic.alice.requests.values()) + sum(
        traffic.bob.requests.values()
    )
    only = traffic.data("/analytics/usage", group_by="model", key="alice", model="spark")
    assert [(r["model"], r["requests"]) for r in only] == [("tiny", 2)]


def test_costs_are_exact_decimal_strings(traffic: Traffic) -> None:
    by_key = {
        row["key"]: row for row in traffic.data("/analytics/costs", timeframe="7d", group_by="key")
    }
    assert Decimal(by_key["alice"]["cost"]) == traffic.alice.cost() > 0
    assert Decimal(by_key["bob"]["cost"]) == traffic.bob.cost() > 0
    by_model = {
        row["model"]: row["cost"] for row in traffic.data("/analytics/costs", timeframe="30d")
    }
    assert Decimal(by_model["plain"]) == 0
    assert Decimal(by_model["tiny"]) == traffic.alice.cost() + traffic.bob.cost()


def test_performance_per_model(traffic: Traffic) -> None:
    found = {row["model"]: row for row in traffic.data("/analytics/performance", timeframe="1h")}
    assert set(found) == {"tiny", "plain"}
    tiny = found["tiny"]
    assert (tiny["requests"], tiny["ok"], tiny["errors"], tiny["rate_limited"]) == (3, 3, 0, 0)
    assert tiny["error_rate"] == 0.0
    assert 0 < tiny["latency_p50_ms"] <= tiny["latency_p95_ms"]
    assert 0 < tiny["ttft_p50_ms"] <= tiny["ttft_p95_ms"]
    assert tiny["tokens_per_s"] is None or tiny["tokens_per_s"] > 0


def test_billing_for_the_current_month(traffic: Traffic) -> None:
    rows = {row["key"]: row for row in traffic.data("/billing")}
    assert set(rows) == {"alice", "bob"}
    alice = rows["alice"]
    assert Decimal(alice["cost"]) == traffic.alice.cost()
    assert alice["requests"] == 3 and alice["budget"] is None
    assert alice["total_tokens"] == sum(traffic.alice.prompt.values()) + sum(
        traffic.alice.completion.values()
    )
    invoices = {inv["key"]: inv for inv in traffic.data("/billing/invoices", month=alice["month"])}
    assert set(invoices) == {"alice", "bob"}
    statement = invoices["alice"]
    assert statement["month"] == alice["month"] and statement["currency"] == "USD"
    lines = {line["model"]: line for line in statement["lines"]}
    assert set(lines) == {"tiny", "plain"}
    tiny = lines["tiny"]
    assert (tiny["prompt_price"], tiny["completion_price"]) == ("0.10", "0.40")
    assert tiny["prompt_tokens"] == traffic.alice.prompt["tiny"]
    assert Decimal(tiny["prompt_amount"]) == traffic.alice.prompt["tiny"] * TINY_PRICES[0] / 10**6
    assert Decimal(tiny["amount"]) == traffic.alice.cost() == Decimal(statement["total"])
    assert Decimal(lines["plain"]["amount"]) == 0
    assert traffic.data("/billing/invoices", month="1999-01") == []


def test_a_user_key_reads_only_its_own_usage(traffic: Traffic) -> None:
    mine = traffic.data("/usage", auth=ALICE, group_by="key")
    assert [(r["key"], r["requests"]) for r in mine] == [("alice", 3)]
    bobs = {r["model"]: r for r in traffic.data("/usage", auth=BOB, timeframe="1h")}
    assert set(bobs) == {"tiny", None}
    assert bobs["tiny"]["completion_tokens"] == traffic.bob.completion["tiny"]
    assert traffic.data("/usage", auth=ADMIN) == []  # the admin key made no requests


@pytest.mark.parametrize(
    "path",
    [
        "/analytics/usage",
        "/analytics/costs",
        "/analytics/performance",
        "/billing",
        "/billing/invoices",
    ],
)
def test_admin_endpoints_need_the_admin_key(traffic: Traffic, path: str) -> None:
    forbidden = traffic.get(path, auth=ALICE)
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "FORBIDDEN" and forbidden.json()["error"]
    for key in (None, "not-a-key"):
        unauthorized = traffic.get(path, auth=key)
        assert unauthorized.status_code == 401
        assert unauthorized.json()["code"] == "UNAUTHORIZED"
    assert traffic.get("/usage", auth=None).json()["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/analytics/usage", {"timeframe": "2h"}, 400, "VALIDATION_ERROR"),
        ("/analytics/costs", {"group_by": "tier"}, 400, "VALIDATION_ERROR"),
        ("/analytics/usage", {"limit": 0}, 400, "VALIDATION_ERROR"),
        ("/billing/invoices", {"month": "2025-13"}, 400, "VALIDATION_ERROR"),
        ("/analytics/usage", {"key": "nobody"}, 404, "KEY_NOT_FOUND"),
    ],
)
def test_bad_parameters_in_the_management_envelope(
    traffic: Traffic, path: str, params: dict[str, Any], status: int, code: str
) -> None:
    reply = traffic.get(path, **params)
    assert reply.status_code == status
    assert reply.json()["code"] == code and reply.json()["error"]


def test_lists_are_paginated(traffic: Traffic) -> None:
    reply = traffic.get("/analytics/usage", group_by="key", limit=1, offset=1).json()
    assert [row["key"] for row in reply["data"]] == ["bob"]
    assert reply["pagination"] == {"total": 2, "limit": 1, "offset": 1, "hasMore": False}


def test_openapi_documents_every_endpoint_with_its_types(traffic: Traffic) -> None:
    schema = httpx.get(f"{traffic.server.root_url}/schema/openapi.json").json()
    components = schema["components"]["schemas"]
    for path in (
        "/v1/analytics/usage",
        "/v1/analytics/costs",
        "/v1/analytics/performance",
        "/v1/billing",
        "/v1/billing/invoices",
        "/v1/usage",
    ):
        operation = schema["paths"][path]["get"]
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert ok.removeprefix("#/components/schemas/") in components
        assert "401" in operation["responses"]
    for name in ("UsageRow", "CostRow", "ModelPerformance", "KeyBilling", "Invoice", "InvoiceLine"):
        assert name in components, sorted(components)
    usage = schema["paths"]["/v1/analytics/usage"]["get"]
    timeframe = next(p for p in usage["parameters"] if p["name"] == "timeframe")
    assert timeframe["schema"]["enum"] == ["1h", "24h", "7d", "30d"]
