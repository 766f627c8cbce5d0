"""What the management API sends: the server returns these Structs and the console decodes them.

One definition for both ends, so /schema/openapi.json documents what the console reads.
Pure msgspec (the console imports it, and the console imports nothing else of the server):
lenient, so a field the server adds later is ignored by an older console, and a field with
a default may be missing. Nothing here is omitted when encoded unless typed `UnsetType`.
"""

from __future__ import annotations

import msgspec


class Pricing(msgspec.Struct, frozen=True):
    prompt: str = "0"
    completion: str = "0"


class Totals(msgspec.Struct, frozen=True):
    """Counters since the server started."""

    requests: int = 0
    errors: int = 0
    cancelled: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0


class LastMinute(msgspec.Struct, frozen=True):
    requests: int = 0
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    p50_ttft_ms: float | None = None
    p95_ttft_ms: float | None = None
    error_rate: float = 0.0


class ModelLive(msgspec.Struct, frozen=True):
    """A served model in the live snapshot: its engine's state and load, and its counters."""

    id: str
    name: str
    status: str
    backend: str = ""
    source: str | None = None
    context_length: int = 0
    pricing: Pricing = Pricing()
    load_seconds: float | None = None
    requests_running: int = 0
    requests_waiting: int = 0
    error: str | None = None
    engine_stats: dict[str, float] = msgspec.field(default_factory=dict)
    replicas: int = 1
    download: Download | msgspec.UnsetType = msgspec.UNSET  # only while a file downloads
    totals: Totals = Totals()
    last_minute: LastMinute = LastMinute()


class RecentRequest(msgspec.Struct, frozen=True):
    seq: int
    id: str
    time: float
    key: str | None
    model: str | None
    status: str
    endpoint: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float | None = None
    ttft_ms: float | None = None
    http_status: int | None = None


class LiveSnapshot(msgspec.Struct, frozen=True):
    time: float
    sequence: int
    models: list[ModelLive]
    recent: list[RecentRequest]


class Budget(msgspec.Struct, frozen=True):
    usd: str
    period: str = "month"


class ThisMonth(msgspec.Struct, frozen=True):
    requests: int = 0
    cost: str = "0"


class ApiKeyView(msgspec.Struct, frozen=True):
    """A key as the API shows it: never its secret or its hash."""

    id: str
    name: str
    prefix: str
    status: str
    source: str
    tier: str | None = None
    models: list[str] | None = None
    budget: Budget | None = None
    expires_at: str | None = None
    created_at: str | None = None
    revoked_at: str | None = None
    last_used_at: str | None = None


class KeyInfo(ApiKeyView, frozen=True):
    """A key in the list, with what it spent this calendar month."""

    this_month: ThisMonth = ThisMonth()


class CreatedKey(ApiKeyView, frozen=True, kw_only=True):
    """A new key with its secret, which the server shows this once."""

    key: str


class Tier(msgspec.Struct, frozen=True):
    name: str
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    max_tokens: int | None = None
    models: list[str] | None = None


class Camel(msgspec.Struct, frozen=True, rename="camel"):
    """The deployments API speaks camelCase, like the requests that make deployments."""


class Replica(Camel, frozen=True):
    """One copy of a deployment's engine (a llama.cpp context, a vLLM process)."""

    id: str
    status: str
    requests_in_flight: int = 0
    requests_served: int = 0
    running: int = 0
    waiting: int = 0
    load_seconds: float | None = None
    error: str | None = None


class Download(msgspec.Struct, frozen=True):
    """A model file on its way from the hub (snake_case, like the download log)."""

    source: str
    state: str  # checking | downloading | verifying | done | failed
    done_bytes: int = msgspec.field(default=0, name="bytes")
    total_bytes: int | None = None
    percent: float | None = None
    error: str | None = None


class DeploymentConfiguration(Camel, frozen=True):
    """How a deployment runs; the autoscaling bounds are None unless it autoscales."""

    backend: str | None = None
    replicas: int = 1
    auto_scaling: bool = False
    min_replicas: int | None = None
    max_replicas: int | None = None
    cooldown_seconds: float | None = None
    target_queue: int | None = None
    context_length: int | None = None


class Deployment(Camel, frozen=True):
    """A model running on a backend with replicas; `declared` ones come from radiance.yaml."""

    id: str
    status: str  # pending | downloading | loading | ready | updating | draining | failed
    name: str = ""
    model_id: str = ""
    source: str | None = None
    adapter: str | None = None
    declared: bool = False
    error: str | None = None
    configuration: DeploymentConfiguration = DeploymentConfiguration()
    ready_replicas: int = 0
    replicas: list[Replica] = msgspec.field(default_factory=list)
    download: Download | None = None
    created_at: str | None = None
    updated_at: str | None = None


class BatchCounts(msgspec.Struct, frozen=True):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchRow(msgspec.Struct, frozen=True):
    """A /v1/batches Batch as the console reads it (GET /v1/batches with the admin key)."""

    id: str
    status: str
    endpoint: str = ""
    created_at: int = 0
    request_counts: BatchCounts = BatchCounts()

    @property
    def running(self) -> bool:
        return self.status in ("validating", "in_progress", "finalizing", "cancelling")


class JobHyperparameters(Camel, frozen=True):
    """What a job trains with: a number, or "auto" until the trainer chose one."""

    n_epochs: int | str = "auto"
    batch_size: int | str = "auto"
    learning_rate_multiplier: float | str = "auto"


class JobFailure(Camel, frozen=True):
    """Why a job failed; `field` names the request field at fault, if one is."""

    code: str
    message: str
    field: str | None = None


class FineTuningJobView(Camel, frozen=True):
    """A fine-tuning job as /v1/fine-tuning shows it (the console reads it with the admin key)."""

    id: str
    model: str
    status: str  # validating_files | queued | running | succeeded | failed | cancelled
    training_file: str = ""
    fine_tuned_model: str | None = None
    validation_file: str | None = None
    hyperparameters: JobHyperparameters = JobHyperparameters()
    trained_tokens: int | None = None
    step: int = 0
    total_steps: int | None = None
    last_loss: float | None = None
    error: JobFailure | None = None
    suffix: str | None = None
    seed: int | None = None
    created_at: str | None = None
    finished_at: str | None = None
    estimated_finish: str | None = None
    metadata: dict[str, str] | None = None

    @property
    def active(self) -> bool:
        return self.status in ("validating_files", "queued", "running")


class DatasetLineError(Camel, frozen=True):
    """One problem of a dataset's file: its line (from 1) and the field at fault, if one is."""

    line: int
    field: str | None
    message: str


class DatasetView(Camel, frozen=True):
    """A dataset: a `fine-tune` file, `ready` with its examples counted or `invalid` with
    its first errors. `tokens` is null: a job's validation counts them with the base
    model's tokenizer."""

    id: str
    name: str
    file_id: str
    status: str  # validating (a model renders and counts it) | ready | invalid
    model: str | None = None
    examples: int | None = None
    tokens: int | None = None
    errors: list[DatasetLineError] = msgspec.field(default_factory=list)
    created_at: str | None = None
