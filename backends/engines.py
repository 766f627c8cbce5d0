"""The engines this server knows: the one place that lists them.

The server finds an engine by a backend's `engine:` tag, or by its config Struct, and
asks its plugin (`backends.plugin.EnginePlugin`) everything engine-specific. Adding an
engine is adding its package and one line here (docs/architecture.md).
"""

from __future__ import annotations

from backends.llamacpp.plugin import LlamaCppBackend, LlamaCppPlugin
from backends.openai.plugin import OpenAIBackend, OpenAIPlugin
from backends.plugin import EngineConfig, EnginePlugin
from backends.vllm.plugin import VllmBackend, VllmPlugin

PLUGINS: tuple[EnginePlugin, ...] = (LlamaCppPlugin(), VllmPlugin(), OpenAIPlugin())
# The `backends:` entries of radiance.yaml, told apart by their `engine:` tag.
BackendConfig = LlamaCppBackend | VllmBackend | OpenAIBackend

_BY_CONFIG = {plugin.config: plugin for plugin in PLUGINS}


def plugin_of(backend: EngineConfig) -> EnginePlugin:
    """The plugin of a backend's engine."""
    return _BY_CONFIG[type(backend)]


def engine_of(backend: EngineConfig) -> str:
    """The `engine:` tag of a backend."""
    return plugin_of(backend).name
