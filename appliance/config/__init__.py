"""radiance.yaml: its schema, and `load_config`, which reads it strictly."""

from appliance.config.loader import LoadedConfig, load_config, parse_config_text
from appliance.config.problems import ConfigError, ConfigProblem
from appliance.config.schema import (
    SAMPLING_PARAMETERS,
    AutoscalingConfig,
    Budget,
    Config,
    KeyConfig,
    ModelConfig,
    Pricing,
    SamplingParameter,
    ServerConfig,
    TierConfig,
    TlsConfig,
    WebhooksConfig,
)

__all__ = [
    "SAMPLING_PARAMETERS",
    "AutoscalingConfig",
    "Budget",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "KeyConfig",
    "LoadedConfig",
    "ModelConfig",
    "Pricing",
    "SamplingParameter",
    "ServerConfig",
    "TierConfig",
    "TlsConfig",
    "WebhooksConfig",
    "load_config",
    "parse_config_text",
]
