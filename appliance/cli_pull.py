"""`radiance pull [SOURCE ...]`: download hf:// model files into the models folder.

The folder is the config's `server.models_dir` (or `--models-dir`), the same one
`radiance up` looks in, so a pulled file is loaded without touching the network.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from appliance.config import LoadedConfig
from appliance.hub.download import DownloadError, download
from appliance.hub.source import SHAPE, BadHubSource, HubSource, is_hub_source

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
    names = list(args.sources)
    if not names:
        assert loaded is not None
        names = [m.source for m in loaded.config.models if m.source and is_hub_source(m.source)]
        if not names:
            print(f"{args.config} names no hf:// sources; nothing to pull")
            return 0
    try:
        sources = [HubSource.parse(name) for name in names]
    except BadHubSource as exc:
        return _fail(f"{exc} ({SHAPE})")
    code = 0
    for source in sources:
        try:
            path = download(source, models_dir, show_bar=True)
        except DownloadError as exc:
            code = _fail(str(exc))
            continue
        print(path, flush=True)
    return code


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pull = commands.add_parser(
        "pull", help="download hf:// model files into the models folder and print their paths"
    )
    pull.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="hf://OWNER/REPO[@REVISION]/PATH.gguf; none: every hf:// source of the config",
    )
    pull.add_argument(
        "--config", default="radiance.yaml", help="the config whose models_dir to use"
    )
    pull.add_argument("--models-dir", help="download here instead of the config's models_dir")
