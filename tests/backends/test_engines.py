"""The engine registry: every engine declared once, its config Struct in the schema."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import get_args

from backends.engines import PLUGINS, BackendConfig


def test_every_plugin_has_its_config_in_the_backend_union_under_its_own_tag() -> None:
    assert set(get_args(BackendConfig)) == {plugin.config for plugin in PLUGINS}
    for plugin in PLUGINS:
        assert plugin.config.__struct_config__.tag == plugin.name
    assert len({plugin.name for plugin in PLUGINS}) == len(PLUGINS)


def test_the_registry_imports_no_engine_library() -> None:
    code = "import sys, backends.engines; print(sorted({'llama_cpp', 'httpx'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_llamacpp_backends_settings_are_its_engines_settings() -> None:
    from backends.llamacpp.engine import LlamaCppSettings
    from backends.llamacpp.plugin import LlamaCppBackend

    settings = {field.name for field in dataclasses.fields(LlamaCppSettings)}
    assert set(LlamaCppBackend.__struct_fields__) <= settings
