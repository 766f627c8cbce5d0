"""Problems in radiance.yaml: where they are, what msgspec said, and the cross checks.

`decode_problem` turns a msgspec error into a located problem with a hint; `check_config`
checks what no single value can say: that names refer to declared things, that names are
unique, that files exist. No message ever contains a secret's value.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import msgspec
import msgspec.inspect as mi

from appliance.config.schema import Config, Name
from appliance.hub.source import SHAPE, BadHubSource, HubSource, is_hub_source

if TYPE_CHECKING:
    from appliance.config.loader import SourceMap

_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_ERROR_AT = re.compile(r"^(.*?) - at (`key` in )?`(\$[^`]*)`$", re.DOTALL)
_SEGMENT = re.compile(r"\.(\w+)|\[(\d+|\.\.\.)\]")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(.*)`$", re.DOTALL)
_NOT_TEXT = re.compile(r"^Expected `str`, got `(int|float|bool)`$")
_NAME_PATTERN: str = get_args(Name)[1].pattern
_NAME_HINT = "use up to 128 letters, digits and `._:/-`, starting with a letter or digit"


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the config, and where (1-based line and column)."""

    file: str
    line: int
    column: int
    path: str
    message: str
    hint: str | None = None

    def render(self) -> str:
        """`file:line:column: $.path: message (hint)`; line 0 means the whole file."""
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        text = f"{where}: {self.path}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(Exception):
    """The config cannot be used; `problems` says why, sorted by line."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.column))
        super().__init__("\n".join(problem.render() for problem in self.problems))


def child_path(path: str, key: object) -> str:
    """The path of `key` under `path`: `$.models[0]`, `$.server.port`, `$.tiers["a.b"]`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    return f"{path}.{text}" if _SIMPLE_KEY.match(text) else f"{path}[{json.dumps(text)}]"


def suggest(word: str, options: Iterable[str]) -> str | None:
    """`did you mean `x`?` for a close option, else the options (None if none)."""
    choices = sorted(set(options))
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    return "expected one of: " + ", ".join(f"`{c}`" for c in choices) if choices else None


def resolve_path(base_dir: Path, name: str) -> Path:
    """`name` as an absolute path; a relative one is taken from `base_dir`."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else base_dir / path


def decode_problem(error: msgspec.ValidationError, data: object, where: SourceMap) -> ConfigProblem:
    """msgspec's error at the line of the value (or key) it names, with a hint."""
    text = str(error)
    match = _ERROR_AT.match(text)
    message = match[1] if match else text
    walk = _Walk(data, text)
    for name, index in _SEGMENT.findall(match[3] if match else "$"):
        if not walk.step(name or (None if index == "..." else int(index))):
            break
    key = walk.failing_key() if match and match[2] else None
    if key is not None:
        message, hint = _explain(message, key)
        return where.problem(child_path(walk.path, key), message, hint, key=True)
    kind = _unwrap(walk.type, walk.value)
    unknown = _UNKNOWN_FIELD.match(message)
    if unknown and isinstance(kind, mi.StructType):
        fields = [f.encode_name for f in kind.fields] + [kind.tag_field or ""]
        path, hint = child_path(walk.path, unknown[1]), suggest(unknown[1], filter(None, fields))
        return where.problem(path, f"unknown field `{unknown[1]}`", hint, key=True)
    tags = [str(s.tag) for s in _structs(walk.parent) if s.tag_field == walk.segment]
    if message.startswith("Invalid value") and tags:
        hint = suggest(str(walk.value), tags)
        return where.problem(walk.path, f"unknown {walk.segment} `{walk.value}`", hint)
    if isinstance(kind, mi.LiteralType):
        hint = suggest(str(walk.value), map(str, kind.values))
        return where.problem(walk.path, message, hint)
    return where.problem(walk.path, *_explain(message, walk.value))


def _explain(message: str, value: object) -> tuple[str, str | None]:
    if _NAME_PATTERN in message and isinstance(value, str):
        return f"`{value}` is not a valid name", _NAME_HINT
    if _NOT_TEXT.match(message):
        return message, "put the value in quotes to keep it as text"
    return message, None


class _Walk:
    """Follows a msgspec error path through data and schema, naming `[...]` keys."""

    def __init__(self, root: object, error_text: str) -> None:
        self.root, self.error_text = root, error_text
        self.value, self.path, self.trail = root, "$", list[object]()
        self.type: mi.Type | None = mi.type_info(Config)
        self.parent: mi.Type | None = None
        self.segment: object = None

    def step(self, segment: object) -> bool:
        """Go one level down; `None` is a dict key that msgspec writes as `[...]`."""
        if segment is None and (segment := self.failing_key()) is None:
            return False
        self.parent, self.segment = self.type, segment
        self.type = _child_type(_unwrap(self.type, self.value), segment)
        try:
            self.value = self.value[segment]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            self.value = None
        self.path = child_path(self.path, segment)
        self.trail.append(segment)
        return True

    def failing_key(self) -> object:
        """The first key of the dict here whose entry alone gives the same error."""
        for key, value in self.value.items() if isinstance(self.value, dict) else ():
            try:
                msgspec.convert(_replace(self.root, self.trail, {key: value}), Config)
            except msgspec.ValidationError as error:
                if str(error) == self.error_text:
                    return key
        return None


def _replace(node: object, trail: list[object], new: object) -> object:
    """A copy of `node` with the value at `trail` replaced by `new`."""
    if not trail:
        return new
    head, rest = trail[0], trail[1:]
    if isinstance(node, dict):
        return {**node, head: _replace(node.get(head), rest, new)}
    if isinstance(node, list):
        return [_replace(v, rest, new) if i == head else v for i, v in enumerate(node)]
    return node


def _unwrap(kind: mi.Type | None, value: object) -> mi.Type | None:
    """The schema type of `value`: metadata dropped, a union resolved by its tag."""
    while isinstance(kind, (mi.Metadata, mi.UnionType)):
        if isinstance(kind, mi.Metadata):
            kind = kind.type
            continue
        options = [t for t in kind.types if not isinstance(t, mi.NoneType)]
        if isinstance(value, dict):
            structs = _structs(kind)
            tagged = [s for s in structs if s.tag_field and value.get(s.tag_field) == s.tag]
            options = [*tagged, *structs, *options]
        kind = options[0] if options else None
    return kind


def _structs(kind: mi.Type | None) -> list[mi.StructType]:
    """Every Struct type that `kind` may be."""
    if isinstance(kind, mi.Metadata):
        return _structs(kind.type)
    if isinstance(kind, mi.UnionType):
        return [s for option in kind.types for s in _structs(option)]
    return [kind] if isinstance(kind, mi.StructType) else []


def _child_type(kind: mi.Type | None, segment: object) -> mi.Type | None:
    if isinstance(kind, mi.StructType):
        return next((f.type for f in kind.fields if f.encode_name == segment), None)
    if isinstance(kind, mi.DictType):
        return kind.value_type
    return kind.item_type if isinstance(kind, (mi.ListType, mi.VarTupleType)) else None


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


def check_gguf(source: str, path: str, where: SourceMap, base_dir: Path) -> Iterator[ConfigProblem]:
    """A llamacpp model's source must be a readable GGUF file or an hf:// source."""
    if is_hub_source(source):
        try:
            HubSource.parse(source)
        except BadHubSource as error:
            yield where.problem(path, str(error), SHAPE)
        return
    file = resolve_path(base_dir, source)
    if file.is_dir():
        yield where.problem(path, f"source `{file}` is a folder, not a GGUF file")
        return
    try:
        with file.open("rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        demo = f"create a demo model with `radiance demo-model {source}` or point"
        hint = f"{demo} source: at a real GGUF file" if source.endswith(".gguf") else None
        yield where.problem(path, f"source `{file}` does not exist", hint)
        return
    except OSError as error:
        yield where.problem(path, f"source `{file}` cannot be read: {error.strerror}")
        return
    if magic != b"GGUF":
        hint = "a GGUF file starts with the bytes `GGUF`"
        yield where.problem(path, f"source `{file}` is not a GGUF file", hint)


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
