"""The `radiance` command: check a config, serve it, manage keys, open the console, or write a
demo model."""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from collections.abc import Sequence

from appliance import cli_keys, cli_pull
from appliance.config import ConfigError, LoadedConfig, load_config


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request at info: hub downloads, webhook deliveries
    # checks and metrics scrapes are noise, not news.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


def _load(path: str) -> LoadedConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        count = len(exc.problems)
        print(f"{path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return None
    except OSError as exc:
        print(f"{path}: cannot read the config: {exc.strerror or exc}", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return 1
    config = loaded.config
    print(
        f"{args.config}: OK ({len(config.models)} models, {len(config.backends)} backends, "
        f"{len(config.keys)} keys, {len(config.tiers)} tiers)"
    )
    for line in _format_lines(loaded):
        print(line)
    return 0


def _format_lines(loaded: LoadedConfig) -> list[str]:
    """Which tool-call format each model whose answers Radiance reads is read in."""
    from appliance.openai.answer_reading import describe_format
    from backends.engines import plugin_of

    lines = []
    for model in loaded.config.models:
        plugin = plugin_of(loaded.config.backends[model.backend])
        if not plugin.parses_answers:
            continue
        template = plugin.chat_template(model, loaded.base_dir)
        if model.tool_parser is None and template is None:
            lines.append(f"  {model.id}: tool format found from its chat template when it loads")
            continue
        where = "tool_parser" if model.tool_parser else "its chat template"
        lines.append(f"  {model.id}: tool format {describe_format(model, template)} ({where})")
    return lines


def cmd_up(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return 1
    _setup_logging(args.log_level or loaded.config.server.log_level)
    from appliance.server import serve

    return 0 if serve(loaded, host=args.host, port=args.port) else 1


def cmd_demo_model(args: argparse.Namespace) -> int:
    from backends.llamacpp.demo_model import BENCH, TINY, write_demo_model
    from backends.llamacpp.demo_model_hf import hf_folder_beside, write_demo_model_hf

    path = pathlib.Path(args.path)
    spec = BENCH if args.bench else TINY
    if path.exists() and not args.force:
        print(f"{path} exists; pass --force to write it again")
    else:
        write_demo_model(path, spec, progress=lambda line: print(line, flush=True))
        size = path.stat().st_size / 1e6
        print(f"wrote {path} ({size:.1f} MB): random weights, it writes random text")
    if args.hf == "none":
        return 0
    folder = pathlib.Path(args.hf) if args.hf else hf_folder_beside(path)
    if (folder / "model.safetensors").exists() and not args.force:
        print(f"{folder} exists; pass --force to write it again")
        return 0
    write_demo_model_hf(folder, spec, progress=lambda line: print(line, flush=True))
    print(f"wrote {folder}/: the same weights for transformers (train_from, for fine-tuning)")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return 1
    return cli_keys.run(loaded, args)


def cmd_pull(args: argparse.Namespace) -> int:
    return cli_pull.run(args, _load)


def cmd_console(args: argparse.Namespace) -> int:
    from tui.launch import run_console

    return run_console(args.url, args.admin_key)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="radiance", description="Radiance: a self-hosted LLM inference appliance."
    )
    commands = root.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="validate a config file")
    check.add_argument("config", help="path to radiance.yaml")
    check.set_defaults(run=cmd_check)

    up = commands.add_parser("up", help="load the models and serve the API")
    up.add_argument("config", help="path to radiance.yaml")
    up.add_argument("--host", help="override server.host")
    up.add_argument("--port", type=int, help="override server.port (0 picks a free port)")
    up.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    up.set_defaults(run=cmd_up)

    demo = commands.add_parser(
        "demo-model", help="write a tiny random-weight GGUF (it produces random text)"
    )
    demo.add_argument("path", help="where to write the .gguf file")
    demo.add_argument("--bench", action="store_true", help="the ~300 MB benchmark variant")
    demo.add_argument("--force", action="store_true", help="overwrite an existing file")
    demo.add_argument(
        "--hf",
        metavar="FOLDER",
        help="where to write the same weights as a Hugging Face folder, for fine-tuning "
        "(default: beside the file, models/tiny.gguf -> models/tiny-hf; `none` skips it)",
    )
    demo.set_defaults(run=cmd_demo_model)

    cli_pull.add_parser(commands)
    commands.choices["pull"].set_defaults(run=cmd_pull)

    console = commands.add_parser(
        "console", help="the admin console: a terminal UI over the server's HTTP API"
    )
    console.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the server (default: %(default)s)"
    )
    console.add_argument(
        "--admin-key",
        help="the admin key (default: $RADIANCE_ADMIN_KEY, else a prompt that does not echo)",
    )
    console.set_defaults(run=cmd_console)

    cli_keys.add_parser(commands)
    commands.choices["keys"].set_defaults(run=cmd_keys)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
