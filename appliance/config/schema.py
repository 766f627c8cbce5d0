"""The shape of radiance.yaml, as strict msgspec Structs.

Every Struct forbids unknown fields so a typo is an error, not a silently ignored key.
Cross-file checks (a backend or tier that does not exist, duplicate ids) live in
``appliance.config.checks``; this module only says what each value may be.
"""

from __future__ import annotations

import decimal
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta

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
]
SAMPLING_PARAMETERS: tuple[SamplingParameter, ...] = get_args(SamplingParameter)

Name = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]
Port = Annotated[int, Meta(ge=0, le=65535)]
PositiveInt = Annotated[int, Meta(ge=1)]


class Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Common settings of every config Struct."""


class ServerConfig(Base, frozen=True):
    host: str = "127.0.0.1"
    port: Port = 8000
    database: str = "radiance.db"
    admin_key: Annotated[str, Meta(min_length=16)] | None = None
    max_body_bytes: PositiveInt = 4 * 1024 * 1024
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class LlamaCppBackend(Base, frozen=True, tag_field="engine", tag="llamacpp"):
    threads: PositiveInt = 2
    max_queue: PositiveInt = 64
    batch_size: PositiveInt = 512
    # Requests decoded together per model (continuous batching); 1 = one at a time.
    # Each slot holds its own context_length of KV cache.
    parallel: PositiveInt = 4
    # Layers offloaded to a GPU when llama-cpp-python is built with CUDA or Metal
    # (-1 = all); 0 keeps everything on the CPU.
    gpu_layers: Annotated[int, Meta(ge=-1)] = 0


BackendConfig = LlamaCppBackend


def _decimal_ok(text: str) -> bool:
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        return False
    return value.is_finite() and value >= 0


class Pricing(Base, frozen=True):
    """USD per one million tokens, as decimal strings so no float rounding creeps in."""

    prompt: Annotated[str, Meta(pattern=r"^[0-9]+(\.[0-9]+)?$")] = "0"
    completion: Annotated[str, Meta(pattern=r"^[0-9]+(\.[0-9]+)?$")] = "0"


class ModelConfig(Base, frozen=True):
    id: Name
    backend: str
    source: str
    name: str | None = None
    context_length: PositiveInt = 4096
    pricing: Pricing = Pricing()
    parameters: list[SamplingParameter] = msgspec.field(
        default_factory=lambda: list(SAMPLING_PARAMETERS)
    )
    aliases: list[Name] = msgspec.field(default_factory=list)
    embeddings: bool = True
    default_max_tokens: PositiveInt | None = None

    def __post_init__(self) -> None:
        if len(set(self.parameters)) != len(self.parameters):
            raise ValueError("parameters lists a name twice")
        if self.id in self.aliases:
            raise ValueError(f"alias `{self.id}` repeats the model's own id")

    @property
    def display_name(self) -> str:
        return self.name or self.id


class TierConfig(Base, frozen=True):
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None


class KeyConfig(Base, frozen=True):
    name: Name
    secret: Annotated[str, Meta(min_length=8)]
    tier: str | None = None


class Config(Base, frozen=True):
    server: ServerConfig = ServerConfig()
    backends: dict[Name, BackendConfig] = msgspec.field(default_factory=dict)
    models: list[ModelConfig] = msgspec.field(default_factory=list)
    tiers: dict[Name, TierConfig] = msgspec.field(default_factory=dict)
    keys: list[KeyConfig] = msgspec.field(default_factory=list)
