"""radiance.yaml: its schema, and `load_config`, which reads it strictly."""

from appliance.config.loader import LoadedConfig, load_config, parse_config_text
from appliance.config.problems import ConfigError, ConfigProblem
from appliance.config.schema import (
    SAMPLING_PARAMETERS,
    AutoscalingConfig,
    BackendConfig,
    Budget,
    Config,
    KeyConfig,
    LlamaCppBackend,
    ModelConfig,
    OpenAIBackend,
    Pricing,
    SamplingParameter,
    ServerConfig,
    TierConfig,
    TlsConfig,
    VllmBackend,
    WebhooksConfig,
)

__all__ = [
    "SAMPLING_PARAMETERS",
    "AutoscalingConfig",
    "BackendConfig",
    "Budget",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "KeyConfig",
    "LlamaCppBackend",
    "LoadedConfig",
    "ModelConfig",
    "OpenAIBackend",
    "Pricing",
    "SamplingParameter",
    "ServerConfig",
    "TierConfig",
    "TlsConfig",
    "VllmBackend",
    "WebhooksConfig",
    "load_config",
    "parse_config_text",
]
