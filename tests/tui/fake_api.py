"""A fake Radiance management API with fixed, deterministic data, for snapshot tests.

Each live poll advances the fake server's clock by one second; token and request counters
follow a fixed wave, so the sparklines have a stable shape. Deployments can be scaled and
deleted (a declared one answers 409, like the server); `actions` records what was asked.
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
        self.deployments: dict[str, dict[str, Any]] = {dep["id"]: dep for dep in _deployments()}
        self.batches: list[dict[str, Any]] = []  # as GET /v1/batches answers
        self.fine_tuning: list[dict[str, Any]] = []  # as GET /v1/fine-tuning lists them
        # (method, deployment id, JSON body or None) of every PUT and DELETE, in order.
        self.actions: list[tuple[str, str, Any]] = []

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
            made = _key("k5", body["name"], "rad-Ne1", body.get("tier"), "api")
            return _ok({**made, "key": "rad-Ne1-fixed-secret-for-the-snapshot"})
        if path == "/v1/batches":
            return httpx.Response(200, json={"object": "list", "data": self.batches})
        if path == "/v1/fine-tuning":
            limit = int(request.url.params.get("limit", "50"))
            found = self.fine_tuning[:limit]
            pagination = {
                "total": len(self.fine_tuning),
                "limit": limit,
                "offset": 0,
                "hasMore": len(found) < len(self.fine_tuning),
            }
            return _ok(found, pagination=pagination)
        if path == "/v1/tiers":
            return _ok([{"name": "free", "rpm": 60}, {"name": "pro", "rpm": 600}])
        if path == "/v1/deployments" and request.method == "GET":
            return self.list_deployments(request.url.params)
        if path.startswith("/v1/deployments/"):
            return self.deployment(request, path.removeprefix("/v1/deployments/"))
        return _error(404, "NOT_FOUND", f"no route {path}")

    def list_deployments(self, params: httpx.QueryParams) -> httpx.Response:
        limit = int(params.get("limit", "50"))
        offset = int(params.get("offset", "0"))
        found = list(self.deployments.values())
        page = found[offset : offset + limit]
        # A deleted deployment is listed once as draining, then it is gone.
        for dep in page:
            if dep["status"] == "draining":
                del self.deployments[dep["id"]]
        pagination = {
            "total": len(found),
            "limit": limit,
            "offset": offset,
            "hasMore": offset + len(page) < len(found),
        }
        return _ok(page, pagination=pagination)

    def deployment(self, request: httpx.Request, deployment_id: str) -> httpx.Response:
        dep = self.deployments.get(deployment_id)
        if dep is None:
            return _error(404, "DEPLOYMENT_NOT_FOUND", f"no deployment `{deployment_id}`")
        if request.method == "GET":
            return _ok(dep)
        body = json.loads(request.content) if request.content else None
        self.actions.append((request.method, deployment_id, body))
        if dep["declared"]:
            message = (
                f"deployment `{deployment_id}` is declared in radiance.yaml; change it there "
                "and restart, or create a deployment of another name with POST /v1/deployments"
            )
            return _error(409, "DEPLOYMENT_DECLARED_IN_CONFIG", message)
        if request.method == "PUT":
            conf = dep["configuration"]
            conf.update(body["configuration"])
            if conf["autoScaling"]:
                conf["replicas"] = max(
                    conf["minReplicas"], min(conf["maxReplicas"], conf["replicas"])
                )
            dep["status"] = "updating"
            return _ok(dep, status=202)
        if request.method == "DELETE":
            dep["status"] = "draining"
            return _ok(dep, status=202)
        return _error(405, "METHOD_NOT_ALLOWED", f"{request.method} {request.url.path}")

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


def _ok(data: Any, *, status: int = 200, pagination: Any = None) -> httpx.Response:
    body = {"data": data, "message": "ok"}
    if pagination is not None:
        body["pagination"] = pagination
    return httpx.Response(status, content=json.dumps(body).encode())


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


def _deployments() -> list[dict[str, Any]]:
    """One declared and ready, one of the API autoscaled, one downloading, one failed."""
    tiny = _deployment("tiny", "tiny", "/srv/models/tiny.gguf", "cpu", 1, 1, 4096)
    tiny["declared"] = True
    tiny["replicas"] = [_replica("tiny-0", served=1290)]
    qwen_source = "hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf"
    qwen = _deployment("qwen2.5-0.5b", "qwen2.5-0.5b", qwen_source, "cpu", 2, 2, 32768)
    qwen["configuration"].update(
        autoScaling=True, minReplicas=1, maxReplicas=3, cooldownSeconds=30.0, targetQueue=2
    )
    qwen["replicas"] = [_replica("qwen2.5-0.5b-0", served=88), _replica("qwen2.5-0.5b-1")]
    llama_source = "hf://bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/Meta-Llama-3.1-8B-Q4_K_M.gguf"
    llama = _deployment("llama-8b", "llama-3.1-8b", llama_source, "gpu", 1, 0, 8192)
    llama["status"] = "downloading"
    llama["download"] = {
        "source": llama_source,
        "state": "downloading",
        "bytes": 2_066_400_000,
        "total_bytes": 4_920_000_000,
        "percent": 42.0,
        "error": None,
    }
    reason = "not enough memory: needs 38.2 GiB, 15.1 GiB free"
    big = _deployment("big", "llama-3.1-70b", "hf://org/llama-70b/model.gguf", "gpu", 1, 0, 32768)
    big["status"] = "failed"
    big["error"] = reason
    big["replicas"] = [
        {**_replica("big-0"), "status": "failed", "error": reason, "loadSeconds": None}
    ]
    return [tiny, qwen, llama, big]


def _deployment(
    deployment_id: str,
    model_id: str,
    source: str,
    backend: str,
    replicas: int,
    ready: int,
    context: int,
) -> dict[str, Any]:
    return {
        "id": deployment_id,
        "name": deployment_id,
        "modelId": model_id,
        "source": source,
        "declared": False,
        "status": "ready",
        "error": None,
        "configuration": {
            "backend": backend,
            "replicas": replicas,
            "autoScaling": False,
            "minReplicas": None,
            "maxReplicas": None,
            "cooldownSeconds": None,
            "targetQueue": None,
            "contextLength": context,
        },
        "readyReplicas": ready,
        "replicas": [],
        "download": None,
        "createdAt": "2025-12-01T09:30:00+00:00",
        "updatedAt": "2025-12-01T09:31:00+00:00",
    }


def _replica(replica_id: str, *, served: int = 0) -> dict[str, Any]:
    return {
        "id": replica_id,
        "status": "ready",
        "requestsInFlight": 0,
        "requestsServed": served,
        "running": 0,
        "waiting": 0,
        "loadSeconds": 1.25,
        "error": None,
    }
