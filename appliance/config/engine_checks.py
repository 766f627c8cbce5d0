"""Checks that depend on a model's engine: which fields it uses and what its source is.

A llamacpp model reads a GGUF file; a vllm model a hub id or a local model directory, run
by the interpreter of another venv; an openai model is served by remote replicas and has
no source. A field that the model's engine does not use is an error, not ignored.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from appliance.config.checks import check_gguf
from appliance.config.problems import ConfigProblem, SourceMap, child_path, resolve_path
from appliance.config.schema import BackendConfig, Config, VllmBackend
from appliance.hub.source import HubRepo, is_hub_source

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# Fields of a model that only some engines use.
_ENGINE_FIELDS = {"tool_parser": ("vllm",), "upstream_model": ("openai",)}


def engine_of(backend: BackendConfig) -> str:
    """The `engine:` tag of a backend."""
    return str(type(backend).__struct_config__.tag)


def check_engines(config: Config, where: SourceMap, base_dir: Path) -> Iterator[ConfigProblem]:
    for name, backend in config.backends.items():
        if isinstance(backend, VllmBackend):
            yield from _check_python(backend, child_path("$.backends", name), where, base_dir)
    for index, model in enumerate(config.models):
        path = child_path("$.models", index)
        if model.backend not in config.backends:
            # The backend is reported by check_config; a GGUF source is still checked.
            if model.source is not None and model.source.endswith(".gguf"):
                yield from check_gguf(model.source, f"{path}.source", where, base_dir)
            continue
        engine = engine_of(config.backends[model.backend])
        for field, engines in _ENGINE_FIELDS.items():
            if getattr(model, field) is not None and engine not in engines:
                message = f"`{field}` is only used by engine `{engines[0]}`"
                hint = f"backend `{model.backend}` has engine `{engine}`"
                yield where.problem(f"{path}.{field}", message, hint, key=True)
        if engine == "openai":
            if model.replicas > 1 or model.autoscaling is not None:
                field = "replicas" if model.replicas > 1 else "autoscaling"
                message = f"`{field}` is not used by engine `openai`"
                hint = "its replicas are the backend's `urls`; list more there"
                yield where.problem(f"{path}.{field}", message, hint, key=True)
            if model.source is not None:
                message = "`source` is not used by engine `openai`: the replicas load the model"
                hint = "name the replicas' model with `upstream_model` if it differs from the id"
                yield where.problem(f"{path}.source", message, hint, key=True)
        elif model.source is None:
            what = "a GGUF file" if engine == "llamacpp" else "a hub id or a local model folder"
            message = f"missing required field `source` ({what} for engine `{engine}`)"
            yield where.problem(path, message)
        elif engine == "vllm":
            yield from _check_vllm_source(model.source, f"{path}.source", where, base_dir)
            gpus = getattr(config.backends[model.backend], "gpus", None) or []
            most = model.autoscaling.max_replicas if model.autoscaling else model.replicas
            if gpus and len(gpus) % most:
                field = "autoscaling.max_replicas" if model.autoscaling else "replicas"
                message = f"{most} replicas cannot share the {len(gpus)} GPUs of `{model.backend}`"
                hint = "each vLLM replica gets an equal slice of the backend's gpus"
                yield where.problem(f"{path}.{field}", message, hint)
        else:
            yield from check_gguf(model.source, f"{path}.source", where, base_dir)


def is_local_source(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~"))


def vllm_source(source: str, base_dir: Path) -> str:
    """What vLLM's `--model` gets: a local folder as an absolute path, else the hub id."""
    local = resolve_path(base_dir, source)
    if is_local_source(source) or local.is_dir():
        return str(local)
    return source


def vllm_repo(source: str, base_dir: Path) -> HubRepo | None:
    """The hub repository a vllm model's source names (Radiance downloads it), or None
    for a local folder."""
    if not is_hub_source(source) and vllm_source(source, base_dir) != source:
        return None
    return HubRepo.parse(source)


def _check_vllm_source(
    source: str, path: str, where: SourceMap, base_dir: Path
) -> Iterator[ConfigProblem]:
    if is_hub_source(source):
        if HubRepo.parse(source) is None:
            hint = "a hub repository for vLLM is hf://OWNER/REPO or hf://OWNER/REPO@REVISION"
            yield where.problem(path, f"source `{source}` is not a hub repository", hint)
        return
    local = resolve_path(base_dir, source)
    if local.is_dir():
        if not (local / "config.json").is_file():
            message = f"source `{local}` has no config.json"
            yield where.problem(path, message, "vLLM loads a Hugging Face model folder")
        return
    if is_local_source(source) or local.exists():
        kind = "is not a folder" if local.exists() else "does not exist"
        hint = "vLLM loads a Hugging Face model folder or a hub id like `org/name`"
        yield where.problem(path, f"source `{local}` {kind}", hint)
    elif not _HUB_ID.match(source):
        hint = "a hub id looks like `meta-llama/Llama-3.3-70B-Instruct`"
        yield where.problem(path, f"source `{source}` is neither a folder nor a hub id", hint)


def _check_python(
    backend: VllmBackend, base: str, where: SourceMap, base_dir: Path
) -> Iterator[ConfigProblem]:
    path = base + ".python"
    python = resolve_path(base_dir, backend.python)
    own = Path(os.path.abspath(sys.executable))
    if python == own or Path(sys.prefix) in python.parents:
        message = f"`{python}` is Radiance's own interpreter"
        hint = "make a separate venv with vllm and name its python"
        yield where.problem(path, message, hint)
    elif not python.is_file():
        hint = "make a venv with vllm: python3 -m venv /opt/vllm && /opt/vllm/bin/pip install vllm"
        yield where.problem(path, f"python `{python}` does not exist", hint)
    elif not os.access(python, os.X_OK):
        yield where.problem(path, f"python `{python}` is not executable")
