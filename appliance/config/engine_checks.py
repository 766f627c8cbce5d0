"""Checks that depend on a model's engine, asked of the engine's plugin.

Each engine's plugin (`backends.engines`) says which model fields only it reads, what a
model's source is (a file or a repository on the hub, or a local path it checks), how its
replicas share GPUs and what else its models and backends must satisfy. A field that the
model's engine does not use is an error, not ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from appliance.config.problems import ConfigProblem, SourceMap, child_path
from appliance.config.schema import Config, ModelConfig
from appliance.hub.source import BadHubSource, HubRepo, HubSource, is_hub_source, shape
from appliance.openai.tool_formats import ALIASES, UnknownFormat, by_name
from backends.engines import PLUGINS, plugin_of
from backends.plugin import EnginePlugin, Issue


def check_engines(config: Config, where: SourceMap, base_dir: Path) -> Iterator[ConfigProblem]:
    for name, backend in config.backends.items():
        base = child_path("$.backends", name)
        for issue in plugin_of(backend).check_backend(backend, base_dir):
            yield _located(where, base, issue)
    for index, model in enumerate(config.models):
        path = child_path("$.models", index)
        if model.backend in config.backends:
            yield from _check_model(model, config, path, where, base_dir)
            continue
        # The backend is reported by check_config; a source is still checked by its ending.
        for plugin in PLUGINS:
            suffix, source = plugin.source_suffix, model.source
            if suffix and source is not None and source.endswith(suffix):
                yield from check_source(plugin, source, f"{path}.source", where, base_dir)


def _check_model(
    model: ModelConfig, config: Config, path: str, where: SourceMap, base_dir: Path
) -> Iterator[ConfigProblem]:
    backend = config.backends[model.backend]
    plugin = plugin_of(backend)
    for field in sorted({f for other in PLUGINS for f in other.model_fields}):
        if getattr(model, field) is not None and field not in plugin.model_fields:
            users = " and ".join(f"`{o.name}`" for o in PLUGINS if field in o.model_fields)
            message = f"`{field}` is only used by engine {users}"
            hint = f"backend `{model.backend}` has engine `{plugin.name}`"
            yield where.problem(f"{path}.{field}", message, hint, key=True)
    if plugin.parses_answers and model.tool_parser is not None:
        try:
            by_name(model.tool_parser)
        except UnknownFormat:
            message = f"unknown tool_parser `{model.tool_parser}`"
            hint = f"known: {', '.join(sorted(ALIASES))}; leave it out to detect it"
            hint += " from the model's chat template"
            yield where.problem(f"{path}.tool_parser", message, hint)
    for issue in plugin.check_model(model, backend):
        yield _located(where, path, issue)
    if model.train_from is not None:
        yield from _check_train_from(model.train_from, f"{path}.train_from", where, base_dir)
    if model.adapter is not None and "adapter" in plugin.model_fields:
        for issue in plugin.check_adapter(model.adapter, base_dir):
            yield _located(where, path, issue)
    if plugin.source_kind is None:
        return
    if model.source is None:
        what = f"{plugin.source_kind} for engine `{plugin.name}`"
        yield where.problem(path, f"missing required field `source` ({what})")
        return
    yield from check_source(plugin, model.source, f"{path}.source", where, base_dir)
    gpus = plugin.gpus(backend) or []
    most = model.autoscaling.max_replicas if model.autoscaling else model.replicas
    if gpus and len(gpus) % most:
        field = "autoscaling.max_replicas" if model.autoscaling else "replicas"
        message = f"{most} replicas cannot share the {len(gpus)} GPUs of `{model.backend}`"
        hint = f"each {plugin.label} replica gets an equal slice of the backend's gpus"
        yield where.problem(f"{path}.{field}", message, hint)


def _check_train_from(
    train_from: str, path: str, where: SourceMap, base_dir: Path
) -> Iterator[ConfigProblem]:
    """Hugging Face weights: a folder with config.json, or a hub repository."""
    if is_hub_source(train_from):
        if HubRepo.parse(train_from) is None:
            hint = "a hub repository is hf://OWNER/REPO or hf://OWNER/REPO@REVISION"
            yield where.problem(path, f"train_from `{train_from}` is not a hub repository", hint)
        return
    folder = base_dir / Path(train_from).expanduser()
    if not (folder / "config.json").is_file():
        hint = (
            "a folder of Hugging Face weights (config.json, *.safetensors, the tokenizer); "
            "`radiance demo-model` writes one beside the demo GGUF"
        )
        yield where.problem(path, f"train_from `{folder}` has no config.json", hint)


def check_source(
    plugin: EnginePlugin, source: str, path: str, where: SourceMap, base_dir: Path
) -> Iterator[ConfigProblem]:
    """A hub source names what the engine loads from the hub; the engine checks others."""
    if not is_hub_source(source):
        for issue in plugin.check_local_source(source, base_dir):
            yield where.problem(path, issue.message, issue.hint)
    elif plugin.hub_source == "file":
        suffix = plugin.source_suffix or ""
        try:
            HubSource.parse(source, suffix)
        except BadHubSource as error:
            yield where.problem(path, str(error), shape(suffix))
    elif HubRepo.parse(source) is None:
        hint = f"a hub repository for {plugin.label} is hf://OWNER/REPO or hf://OWNER/REPO@REVISION"
        yield where.problem(path, f"source `{source}` is not a hub repository", hint)


def hub_item(plugin: EnginePlugin, source: str, base_dir: Path) -> HubSource | HubRepo | None:
    """What a model's source names on the hub (a file or a repository, as its engine
    loads), or None for a local source."""
    if not is_hub_source(source) and plugin.local_source(source, base_dir) is not None:
        return None
    if plugin.hub_source == "repository":
        return HubRepo.parse(source)
    return HubSource.parse(source, plugin.source_suffix or "")


def _located(where: SourceMap, base: str, issue: Issue) -> ConfigProblem:
    path = f"{base}.{issue.field}" if issue.field else base
    return where.problem(path, issue.message, issue.hint, key=issue.key)
