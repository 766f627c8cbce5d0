"""`radiance pull [SOURCE ...]`: download hub models into the models folder: hf:// GGUF
files (llama.cpp) and whole repositories (vLLM: `hf://OWNER/REPO`, or a vllm model's hub id).

The folder is the config's `server.models_dir` (or `--models-dir`), the same one
`radiance up` looks in, so a pulled file is loaded without touching the network.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from appliance.config import LoadedConfig
from appliance.config.engine_checks import hub_item
from appliance.hub.download import DownloadError, download
from appliance.hub.repository import download_repo
from appliance.hub.source import BadHubSource, HubRepo, HubSource, is_hub_source, shape
from backends.engines import PLUGINS, plugin_of

LoadConfig = Callable[[str], LoadedConfig | None]


def _fail(message: str) -> int:
    print(f"radiance pull: {message}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace, load: LoadConfig) -> int:
    loaded = None
    if args.models_dir is None or not args.sources:
        loaded = load(args.config)
        if loaded is None:
            return 1
    models_dir = Path(args.models_dir).resolve() if args.models_dir else None
    if models_dir is None:
        assert loaded is not None
        models_dir = loaded.models_dir
    wanted: list[HubSource | HubRepo] = []
    if args.sources:
        files = [p.source_suffix for p in PLUGINS if p.hub_source == "file" and p.source_suffix]
        folders = " or ".join(p.label for p in PLUGINS if p.hub_source == "repository")
        for name in args.sources:
            repo = HubRepo.parse(name) if is_hub_source(name) else None
            suffix = next((s for s in files if name.endswith(s)), files[0])
            try:
                wanted.append(repo or HubSource.parse(name, suffix))
            except BadHubSource as exc:
                return _fail(f"{exc} ({shape(suffix)}, or hf://OWNER/REPO for a {folders} model)")
    else:
        assert loaded is not None
        wanted = _config_sources(loaded)
        if not wanted:
            print(f"{args.config} names no models on the hub; nothing to pull")
            return 0
    code = 0
    for source in wanted:
        try:
            if isinstance(source, HubRepo):
                path = download_repo(source, models_dir, show_bar=True)
            else:
                path = download(source, models_dir, show_bar=True)
        except DownloadError as exc:
            code = _fail(str(exc))
            continue
        print(path, flush=True)
    return code


def _config_sources(loaded: LoadedConfig) -> list[HubSource | HubRepo]:
    """The hub sources of the config's models: files or repositories, as each engine loads."""
    found: list[HubSource | HubRepo] = []
    for model in loaded.config.models:
        backend = loaded.config.backends.get(model.backend)
        if model.source is None or backend is None:
            continue
        item = hub_item(plugin_of(backend), model.source, loaded.base_dir)
        if item is not None:
            found.append(item)
    return found


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pull = commands.add_parser(
        "pull", help="download hub models into the models folder and print their paths"
    )
    pull.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="hf://OWNER/REPO[@REVISION]/PATH.gguf, or hf://OWNER/REPO[@REVISION] (a whole "
        "repository, for vLLM); none: every hub source of the config",
    )
    pull.add_argument(
        "--config", default="radiance.yaml", help="the config whose models_dir to use"
    )
    pull.add_argument("--models-dir", help="download here instead of the config's models_dir")
