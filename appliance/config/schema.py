"""The shape of radiance.yaml, as strict msgspec Structs.

Every Struct forbids unknown fields so a typo is an error, not a silently ignored key.
Cross-file checks (a backend or tier that does not exist, duplicate ids) live in
``appliance.config.checks``; this module only says what each value may be.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta

from backends.engines import BackendConfig
from backends.plugin import PositiveInt, Seconds

# Every OpenAI sampling parameter a model may declare in `parameters:`.
SamplingParameter = Literal[
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "n",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "logit_bias",
]
SAMPLING_PARAMETERS: tuple[SamplingParameter, ...] = get_args(SamplingParameter)

Name = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]
Port = Annotated[int, Meta(ge=0, le=65535)]


class Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Common settings of every config Struct."""


class TlsConfig(Base, frozen=True):
    """The listener's certificate chain and private key, PEM files (an unencrypted key)."""

    cert: str
    key: str


Secret = Annotated[str, Meta(min_length=16)]


class ServerConfig(Base, frozen=True):
    host: str = "127.0.0.1"
    port: Port = 8000
    database: str = "radiance.db"
    # Where hf:// sources are downloaded (huggingface_hub's cache layout).
    models_dir: str = "models"
    admin_key: Secret | None = None
    # A key that may read /metrics and nothing else (the admin key may too).
    metrics_key: Secret | None = None
    max_body_bytes: PositiveInt = 4 * 1024 * 1024
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # HTTPS on the listener; none serves plain HTTP.
    tls: TlsConfig | None = None
    # Seconds a connection may take to send a whole request head, counted from the
    # connect or from the end of the previous response; then it is closed.
    header_timeout_seconds: Seconds = 10.0
    # Seconds an idle connection is kept open between requests.
    keep_alive_seconds: PositiveInt = 5
    # Open connections (idle ones count) beyond which a new request gets 503.
    max_connections: PositiveInt = 2048
    # Seconds a stopping server lets requests under way finish; those still running
    # then are cancelled, each settled with its ledger row.
    shutdown_grace_seconds: PositiveInt = 10
    # Days a stored /v1/responses answer is kept (for retrieval and previous_response_id).
    responses_retention_days: PositiveInt = 30
    # When a finished request's ledger row counts as stored. "process": it is in the
    # database's write-ahead log before the response ends, so it survives the server being
    # killed (kill -9, a crash, OOM) but a power cut or kernel panic can lose the rows of
    # the last moments. "power": each commit also waits for the disk (fsync), surviving
    # a power cut, at about 0.3 ms per commit.
    ledger_durability: Literal["process", "power"] = "process"
    # Where /v1/files uploads and batch results are kept; relative to this file.
    files_dir: str = "files"
    # The largest file POST /v1/files accepts (bytes); a larger upload gets 413.
    max_file_bytes: PositiveInt = 200 * 1024 * 1024
    # /v1/batches lines running at once over the whole server, when capacity allows.
    batch_lines_in_flight: PositiveInt = 8


def _decimal_ok(text: str) -> bool:
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        return False
    return value.is_finite() and value >= 0


# USD as a decimal string; six decimals at most, so costs are exact integers of 1e-12 USD.
Usd = Annotated[str, Meta(pattern=r"^[0-9]{1,9}(\.[0-9]{1,6})?$")]


class BatchPricing(Base, frozen=True):
    """USD per one million tokens for the lines of a /v1/batches job."""

    prompt: Usd = "0"
    completion: Usd = "0"


class FineTunedPricing(Base, frozen=True):
    """USD per one million tokens for the models fine-tuned from this one."""

    prompt: Usd = "0"
    completion: Usd = "0"


class Pricing(Base, frozen=True):
    """USD per one million tokens, as decimal strings so no float rounding creeps in."""

    prompt: Usd = "0"
    completion: Usd = "0"
    # What a /v1/batches line pays; without it a batch line pays `prompt` and `completion`.
    batch: BatchPricing | None = None
    # What a fine-tuning job pays per million trained tokens (examples x epochs).
    training: Usd = "0"
    # What the models fine-tuned from this one pay; without it they pay as this one.
    fine_tuned: FineTunedPricing | None = None


class AutoscalingConfig(Base, frozen=True):
    """Replicas follow the queue: one more when `target_queue` requests per replica wait,
    one fewer when the others could carry the load; at most one change per cool-down."""

    max_replicas: PositiveInt
    min_replicas: PositiveInt = 1
    cooldown_seconds: Seconds = 30.0
    target_queue: PositiveInt = 2

    def __post_init__(self) -> None:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas is more than max_replicas")


class ModelConfig(Base, frozen=True):
    id: Name
    backend: str
    # llamacpp: a GGUF file; vllm: a hub id or a local directory; openai: not used.
    source: str | None = None
    name: str | None = None
    context_length: PositiveInt = 4096
    pricing: Pricing = Pricing()
    parameters: list[SamplingParameter] = msgspec.field(
        default_factory=lambda: list(SAMPLING_PARAMETERS)
    )
    aliases: list[Name] = msgspec.field(default_factory=list)
    embeddings: bool = True
    # Listed by GET /v1/models to callers without a key; `false` hides the model from them
    # (a key that may use it still sees it).
    public: bool = True
    default_max_tokens: PositiveInt | None = None
    # The format the model writes tool calls in (vLLM's `--tool-call-parser` names: hermes,
    # llama3_json, mistral, deepseek_v3, openai, ...). llamacpp: found from the chat
    # template when not set; vllm: enables tool_choice `auto`.
    tool_parser: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]+$")] | None = None
    # llamacpp: `split` answers a model's reasoning (<think>, harmony's analysis) in
    # `reasoning_content`; `inline` leaves it in `content` as the model wrote it.
    reasoning: Literal["split", "inline"] = "split"
    # openai: the model name the replicas know; the id by default.
    upstream_model: str | None = None
    # Engines of this model serving side by side (llama.cpp contexts, vLLM processes);
    # requests go to the one with the fewest in flight. With `autoscaling` this is the
    # count at start, kept between its min_replicas and max_replicas.
    replicas: Annotated[int, Meta(ge=1, le=64)] = 1
    autoscaling: AutoscalingConfig | None = None
    # The model's Hugging Face weights (a folder with config.json and safetensors, or an
    # hf://OWNER/REPO[@REVISION] source), which fine-tuning jobs train LoRA adapters on.
    # A vLLM model trains from its own source when this is not set.
    train_from: str | None = None
    # A LoRA adapter applied on top of the source: llamacpp, a GGUF LoRA file; vllm, a
    # PEFT adapter folder. Fine-tuned models are deployments of their base with one.
    adapter: str | None = None

    def __post_init__(self) -> None:
        if len(set(self.parameters)) != len(self.parameters):
            raise ValueError("parameters lists a name twice")
        if self.id in self.aliases:
            raise ValueError(f"alias `{self.id}` repeats the model's own id")

    @property
    def display_name(self) -> str:
        return self.name or self.id


class TierConfig(Base, frozen=True):
    """Limits shared by every key of the tier; a missing limit is no limit."""

    rpm: PositiveInt | None = None  # requests per minute (any 60 s window)
    tpm: PositiveInt | None = None  # tokens per minute, prompt + completion
    concurrency: PositiveInt | None = None  # requests in flight at once
    max_tokens: PositiveInt | None = None  # cap on a request's completion tokens
    models: list[Name] | None = None  # allow-list of model ids or aliases
    # /v1/batches lines of one key running at once (batches ignore rpm, tpm, concurrency).
    batch_lines_in_flight: PositiveInt | None = None


class Budget(Base, frozen=True):
    """A spending cap in USD per calendar day or month (UTC)."""

    usd: Usd
    period: Literal["day", "month"] = "month"


class KeyConfig(Base, frozen=True):
    name: Name
    secret: Annotated[str, Meta(min_length=8)]
    tier: str | None = None
    models: list[Name] | None = None  # narrows the tier's allow-list
    budget: Budget | None = None
    expires_at: datetime.datetime | None = None  # ISO 8601; no offset means UTC


class WebhooksConfig(Base, frozen=True):
    """How deliveries to webhook receivers are made and retried."""

    timeout_seconds: PositiveInt = 10  # per attempt
    retry_for_seconds: PositiveInt = 86400  # after this long since the event: failed
    max_backoff_seconds: PositiveInt = 600  # the wait between attempts doubles up to this


class TrainingConfig(Base, frozen=True):
    """Where fine-tuning jobs train: a trainer process per job, beside the serving engines."""

    # CPU threads a trainer may use; the serving engines keep the rest of the cores.
    threads: PositiveInt = 1
    # CUDA devices a trainer runs on (its CUDA_VISIBLE_DEVICES); empty trains on the CPU.
    gpus: list[Annotated[int, Meta(ge=0)]] = msgspec.field(default_factory=list)
    # The share of a GPU's memory a trainer may allocate, when it shares the GPU with a
    # vLLM backend (whose own share is its gpu_memory_utilization): keep the sum under 1.
    gpu_memory_fraction: Annotated[float, Meta(gt=0, le=1)] = 1.0
    # Jobs that train at once; the others wait `queued`.
    jobs_at_once: Annotated[int, Meta(ge=1, le=16)] = 1
    # Jobs one key may have under way (validating, queued or running); more get 429.
    jobs_per_key: Annotated[int, Meta(ge=1, le=1000)] = 8
    # Files checked against a model's tokenizer at once (a job's first step, a dataset
    # made for a model): each is a process that loads the tokenizer.
    checks_at_once: Annotated[int, Meta(ge=1, le=16)] = 2


class Config(Base, frozen=True):
    server: ServerConfig = ServerConfig()
    # The engines' own Structs (`backends.engines`), told apart by `engine:`.
    backends: dict[Name, BackendConfig] = msgspec.field(default_factory=dict)
    models: list[ModelConfig] = msgspec.field(default_factory=list)
    tiers: dict[Name, TierConfig] = msgspec.field(default_factory=dict)
    keys: list[KeyConfig] = msgspec.field(default_factory=list)
    webhooks: WebhooksConfig = WebhooksConfig()
    training: TrainingConfig = TrainingConfig()
