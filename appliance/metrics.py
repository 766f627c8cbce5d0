"""Prometheus metrics, named after vLLM's so existing Grafana panels adapt with a rename.

Counters and histograms are labelled by model (never by key: keys are unbounded and
names are private); the running and waiting gauges are read from the engines at scrape
time. Each app has its own CollectorRegistry, so two servers in one process (tests)
never share counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from appliance.registry import ModelRegistry
from appliance.state.ledger import RequestRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 300)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 60)


class _EngineGauges(Collector):
    def __init__(self, models: ModelRegistry) -> None:
        self._models = models

    def collect(self) -> Iterator[GaugeMetricFamily]:
        running = GaugeMetricFamily(
            "radiance:num_requests_running", "Requests generating now.", labels=["model_name"]
        )
        waiting = GaugeMetricFamily(
            "radiance:num_requests_waiting", "Requests queued for a slot.", labels=["model_name"]
        )
        ready = GaugeMetricFamily(
            "radiance:model_ready", "1 when the model is loaded and serving.", labels=["model_name"]
        )
        engine = GaugeMetricFamily(
            "radiance:engine_stat",
            "Figures an engine reports (vLLM: scraped from its /metrics; kv_cache_usage, "
            "ttft_seconds_mean, ...; replicas: healthy count).",
            labels=["model_name", "stat"],
        )
        for served in self._models:
            stats = served.engine.stats()
            running.add_metric([served.id], stats.running)
            waiting.add_metric([served.id], stats.waiting)
            ready.add_metric([served.id], float(served.engine.status.value == "ready"))
            for name, value in sorted(stats.extra.items()):
                engine.add_metric([served.id, name], value)
        yield running
        yield waiting
        yield ready
        yield engine


class Metrics:
    def __init__(self, models: ModelRegistry) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        self.requests = Counter(
            "radiance:requests",
            "Inference requests by final status (ok, error, cancelled, rate_limited).",
            [*labels, "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "radiance:request_errors",
            "Failed inference requests by error code.",
            [*labels, "code"],
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "radiance:prompt_tokens", "Prompt tokens billed.", labels, registry=self.registry
        )
        self.generation_tokens = Counter(
            "radiance:generation_tokens",
            "Generated tokens billed.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "radiance:e2e_request_latency_seconds",
            "Time from request to last byte, successful requests.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "radiance:time_to_first_token_seconds",
            "Time from request to the first generated token.",
            labels,
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_EngineGauges(models))
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def observe(self, row: RequestRecord) -> None:
        model = row.model or ""
        self._of(self.requests, model, row.status).inc()
        if row.status == "error" and row.error_code:
            self._of(self.errors, model, row.error_code).inc()
        if row.prompt_tokens:
            self._of(self.prompt_tokens, model).inc(row.prompt_tokens)
        if row.completion_tokens:
            self._of(self.generation_tokens, model).inc(row.completion_tokens)
        if row.status == "ok":
            self._of(self.latency, model).observe(row.latency_ms / 1000)
        if row.ttft_ms is not None:
            self._of(self.ttft, model).observe(row.ttft_ms / 1000)

    def _of(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, kept: prometheus_client checks and locks each call."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)
