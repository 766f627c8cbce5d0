"""vLLM's Prometheus /metrics, read into the figures Radiance shows and exports."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

# vLLM's metric -> Radiance's name for it in EngineStats.extra.
_GAUGES = {
    "vllm:num_requests_running": "requests_running",
    "vllm:num_requests_waiting": "requests_waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:gpu_cache_usage_perc": "kv_cache_usage",  # before vLLM 0.10
    "vllm:prompt_tokens": "prompt_tokens_total",
    "vllm:generation_tokens": "generation_tokens_total",
    "vllm:request_success": "requests_finished_total",
    "vllm:num_preemptions": "preemptions_total",
}
_MEANS = {
    "vllm:time_to_first_token_seconds": "ttft_seconds_mean",
    "vllm:e2e_request_latency_seconds": "e2e_latency_seconds_mean",
    "vllm:inter_token_latency_seconds": "inter_token_latency_seconds_mean",
}


def parse_metrics(text: str) -> dict[str, float]:
    """Sums over labels of the figures above; histogram means as sum / count."""
    figures: dict[str, float] = {}
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        name = family.name
        if name in _GAUGES:
            total = sum(
                s.value for s in family.samples if not s.name.endswith(("_created", "_bucket"))
            )
            figures[_GAUGES[name]] = figures.get(_GAUGES[name], 0.0) + total
        elif name in _MEANS:
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    sums[name] = sums.get(name, 0.0) + sample.value
                elif sample.name.endswith("_count"):
                    counts[name] = counts.get(name, 0.0) + sample.value
    for name, label in _MEANS.items():
        if counts.get(name):
            figures[label] = sums.get(name, 0.0) / counts[name]
    return figures
