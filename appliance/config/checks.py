"""The cross checks of radiance.yaml: what no single value can say.

`check_config` checks that names refer to declared things, that names are unique and
that files exist. No message ever contains a secret's value.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable, Iterator
from pathlib import Path

from appliance.config.problems import ConfigProblem, SourceMap, child_path, suggest
from appliance.config.schema import Config
from backends.plugin import resolve_path


def check_config(config: Config, where: SourceMap, base_dir: Path) -> list[ConfigProblem]:
    """Every cross-reference, uniqueness and file problem of a decoded config."""
    problems = list(_check_names(config, where))
    problems += _check_keys(config, where)
    problems += _check_allow_lists(config, where)
    for index, model in enumerate(config.models):
        path = child_path("$.models", index)
        if model.backend not in config.backends:
            declared = config.backends
            problems.append(
                _undeclared(where, path + ".backend", "backend", model.backend, declared)
            )
    problems += _check_database(config, where, base_dir)
    problems += _check_tls(config, where, base_dir)
    return problems


def _check_names(config: Config, where: SourceMap) -> Iterator[ConfigProblem]:
    """Model ids and aliases share one namespace: each may be used once."""
    seen: dict[str, tuple[str, str, str]] = {}  # name -> (kind, model id, path)
    for index, model in enumerate(config.models):
        base = child_path("$.models", index)
        names = [("id", model.id, base + ".id")] + [
            ("alias", alias, child_path(base + ".aliases", number))
            for number, alias in enumerate(model.aliases)
        ]
        for kind, name, path in names:
            first_kind, owner, first = seen.setdefault(name, (kind, model.id, path))
            if first != path:
                was = "the id" if first_kind == "id" else "an alias"
                line = where.locate(first)[0]
                yield where.problem(
                    path, f"{kind} `{name}` is already {was} of model `{owner}` (line {line})"
                )


def _check_keys(config: Config, where: SourceMap) -> Iterator[ConfigProblem]:
    """Key names and secrets are unique; tiers are declared. Secrets are never shown."""
    names: dict[str, str] = {}  # key name -> path
    secrets: dict[str, tuple[str, str]] = {}  # secret -> (key name, path)
    for index, key in enumerate(config.keys):
        base = child_path("$.keys", index)
        if (first := names.setdefault(key.name, base + ".name")) != base + ".name":
            line = where.locate(first)[0]
            message = f"key name `{key.name}` is already used (line {line})"
            yield where.problem(base + ".name", message)
        owner, first = secrets.setdefault(key.secret, (key.name, base + ".secret"))
        line = where.locate(first)[0]
        if first != base + ".secret":
            same = f"key `{owner}` (line {line})"
        elif key.secret == config.server.admin_key:
            same = "`server.admin_key`"
        elif key.secret == config.server.metrics_key:
            same = "`server.metrics_key`"
        else:
            same = ""
        if same:
            message = f"key `{key.name}` has the same secret as {same}"
            yield where.problem(base + ".secret", message, "give every key its own secret")
        if key.tier is not None and key.tier not in config.tiers:
            yield _undeclared(where, base + ".tier", "tier", key.tier, config.tiers)


def _check_allow_lists(config: Config, where: SourceMap) -> Iterator[ConfigProblem]:
    """Allow-lists of tiers and keys name declared models (by id or alias)."""
    names = {name for model in config.models for name in (model.id, *model.aliases)}
    lists = [(child_path("$.tiers", name), tier.models) for name, tier in config.tiers.items()]
    lists += [(child_path("$.keys", i), key.models) for i, key in enumerate(config.keys)]
    for base, allowed in lists:
        for index, name in enumerate(allowed or ()):
            if name not in names:
                path = child_path(base + ".models", index)
                yield _undeclared(where, path, "model", name, names)


def _undeclared(
    where: SourceMap, path: str, what: str, name: str, declared: Iterable[str]
) -> ConfigProblem:
    hint = suggest(name, declared) or f"declare it under `{what}s:`"
    return where.problem(path, f"{what} `{name}` is not declared under `{what}s`", hint)


def _check_database(config: Config, where: SourceMap, base_dir: Path) -> Iterator[ConfigProblem]:
    """The database's folder must exist or be creatable (it is not created here)."""
    name = config.server.database
    file = resolve_path(base_dir, name)
    if name == ":memory:" or file.parent.is_dir():
        return
    ancestor = file.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    usable = ancestor.is_dir() and os.access(ancestor, os.W_OK | os.X_OK)
    if not usable:
        why = "is not a writable folder" if ancestor.is_dir() else "is not a folder"
        message = f"the folder for database `{name}` cannot be created: `{ancestor}` {why}"
        yield where.problem("$.server.database", message)


def _check_tls(config: Config, where: SourceMap, base_dir: Path) -> Iterator[ConfigProblem]:
    """`server.tls` names a readable certificate and key that belong together."""
    tls = config.server.tls
    if tls is None:
        return
    missing = False
    for field, name in (("cert", tls.cert), ("key", tls.key)):
        file = resolve_path(base_dir, name)
        if not file.is_file() or not os.access(file, os.R_OK):
            why = "does not exist" if not file.exists() else "is not a readable file"
            yield where.problem(f"$.server.tls.{field}", f"`{file}` {why}")
            missing = True
    if missing:
        return
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # An encrypted key would make OpenSSL ask for a passphrase on the terminal.
        context.load_cert_chain(
            resolve_path(base_dir, tls.cert), resolve_path(base_dir, tls.key), password=b""
        )
    except (ssl.SSLError, ValueError) as error:
        hint = "both are PEM files, the key unencrypted and the certificate's own"
        message = f"the certificate and key cannot be used: {error}"
        yield where.problem("$.server.tls", message, hint)
