"""A fake Radiance management API with fixed, deterministic data, for snapshot tests.

Each live poll advances the fake server's clock by one second; token and request counters
follow a fixed wave, so the sparklines have a stable shape.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx

START = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
ADMIN = "fake-admin-key-0123456789"


def _wave(step: int, base: float, swing: float) -> float:
    return base + swing * math.sin(step / 4)


class FakeApi:
    def __init__(self, *, admin_key: str = ADMIN, reachable: bool = True) -> None:
        self.admin_key = admin_key
        self.reachable = reachable
        self.step = 0
        self.tokens = {"tiny": 0, "qwen2.5-0.5b": 0}
        self.requests = {"tiny": 0, "qwen2.5-0.5b": 0}
        self.keys: list[dict[str, Any]] = [
            _key("k1", "admin-tools", "rad-adm", None, "config", requests=412, cost="0.0412"),
            _key("k2", "alice", "sk-alic", "free", "config", requests=1290, cost="1.284311"),
            _key("k3", "search-team", "rad-4Qx", "pro", "api", requests=88, cost="0.000712"),
            _key("k4", "old-batch", "rad-9Zp", "free", "api", status="revoked"),
        ]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if not self.reachable:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if request.headers.get("authorization") != f"Bearer {self.admin_key}":
            return _error(401, "UNAUTHORIZED", "Invalid API key.")
        path = request.url.path
        if path == "/v1/analytics/live":
            return _ok(self.live(int(request.url.params.get("since", "0"))))
        if path == "/v1/api-keys" and request.method == "GET":
            return _ok(self.keys)
        if path == "/v1/api-keys" and request.method == "POST":
            body = json.loads(request.content)
            made = {"id": "k5", "name": body["name"], "prefix": "rad-Ne1", "tier": body.get("tier")}
            return _ok({**made, "key": "rad-Ne1-fixed-secret-for-the-snapshot"})
        if path == "/v1/tiers":
            return _ok([{"name": "free", "rpm": 60}, {"name": "pro", "rpm": 600}])
        return _error(404, "NOT_FOUND", f"no route {path}")

    def live(self, since: int) -> dict[str, Any]:
        self.step += 1
        step = self.step
        self.tokens["tiny"] += round(_wave(step, 240, 160))
        self.requests["tiny"] += 2 + step % 3
        self.tokens["qwen2.5-0.5b"] += round(_wave(step + 6, 60, 40))
        self.requests["qwen2.5-0.5b"] += step % 2
        recent = [
            _recent(seq, START + seq * 0.7)
            for seq in range(max(since, step * 2 - 2) + 1, step * 2 + 1)
        ]
        return {
            "time": START + step,
            "sequence": step * 2,
            "models": [
                _model("tiny", "Tiny Random Llama", "ready", self.tokens, self.requests, 3, 1),
                _model("qwen2.5-0.5b", "Qwen 2.5 0.5B", "ready", self.tokens, self.requests, 1, 0),
                {
                    **_model("big", "Llama 70B", "failed", self.tokens, self.requests, 0, 0),
                    "error": "not enough memory: needs 38.2 GiB, 15.1 GiB free",
                },
            ],
            "recent": recent,
        }


def _ok(data: Any) -> httpx.Response:
    return httpx.Response(200, content=json.dumps({"data": data, "message": "ok"}).encode())


def _error(status: int, code: str, message: str) -> httpx.Response:
    body = {"error": message, "code": code, "details": {}}
    return httpx.Response(status, content=json.dumps(body).encode())


def _model(
    model_id: str,
    name: str,
    status: str,
    tokens: dict[str, int],
    requests: dict[str, int],
    running: int,
    waiting: int,
) -> dict[str, Any]:
    live = status == "ready"
    return {
        "id": model_id,
        "name": name,
        "context_length": 4096 if model_id == "tiny" else 32768,
        "pricing": {"prompt": "0.10", "completion": "0.40"},
        "status": status,
        "backend": "cpu" if model_id != "big" else "gpu",
        "load_seconds": 1.25 if live else None,
        "requests_running": running,
        "requests_waiting": waiting,
        "error": None,
        "totals": {
            "requests": requests.get(model_id, 0),
            "errors": 2,
            "cancelled": 1,
            "rate_limited": 0,
            "prompt_tokens": 0,
            "generated_tokens": tokens.get(model_id, 0),
        },
        "last_minute": {
            "requests": 120 if live else 0,
            "p50_latency_ms": 412.0 if live else None,
            "p95_latency_ms": 1830.5 if live else None,
            "p50_ttft_ms": 38.0 if live else None,
            "p95_ttft_ms": 121.0 if live else None,
            "error_rate": 0.0125 if model_id == "tiny" else 0.0,
        },
    }


def _recent(seq: int, moment: float) -> dict[str, Any]:
    statuses = ["ok", "ok", "ok", "error", "ok", "rate_limited", "ok", "cancelled"]
    status = statuses[seq % len(statuses)]
    http = {"ok": 200, "error": 500, "rate_limited": 429, "cancelled": 499}[status]
    return {
        "seq": seq,
        "id": f"req{seq:04d}",
        "time": moment,
        "key": ["alice", "search-team", "admin-tools"][seq % 3],
        "model": ["tiny", "qwen2.5-0.5b"][seq % 2],
        "endpoint": "/v1/chat/completions" if seq % 4 else "/v1/embeddings",
        "prompt_tokens": 10 + seq % 17,
        "completion_tokens": 0 if status == "rate_limited" else 20 + seq % 41,
        "latency_ms": 100.0 + (seq * 37) % 900,
        "ttft_ms": None if status == "rate_limited" else 20.0 + seq % 30,
        "status": status,
        "http_status": http,
    }


def _key(
    key_id: str,
    name: str,
    prefix: str,
    tier: str | None,
    source: str,
    *,
    requests: int = 0,
    cost: str = "0",
    status: str = "active",
) -> dict[str, Any]:
    return {
        "id": key_id,
        "name": name,
        "prefix": prefix,
        "tier": tier,
        "models": None if name != "search-team" else ["tiny"],
        "budget": None,
        "expires_at": None,
        "created_at": "2025-12-01T09:30:00+00:00",
        "revoked_at": "2025-12-20T10:00:00+00:00" if status == "revoked" else None,
        "last_used_at": "2025-12-31T23:59:00+00:00" if requests else None,
        "source": source,
        "status": status,
        "this_month": {"requests": requests, "cost": cost},
    }
