"""Read radiance.yaml strictly: YAML with positions, `${ENV}` substitution, msgspec decoding.

`load_config` returns a `LoadedConfig` or raises `ConfigError`, whose lines name the file,
line, column and `$.path` of every problem.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from appliance.config.checks import check_config
from appliance.config.engine_checks import check_engines
from appliance.config.problems import (
    ConfigError,
    ConfigProblem,
    SourceMap,
    child_path,
)
from appliance.config.schema import Config, ModelConfig
from appliance.config.structure import decode_config
from backends.plugin import resolve_path

_TAG = "tag:yaml.org,2002:"
# `$${` (a literal `${`), `${NAME}`, `${NAME:-default}`, or a bare `${` that is malformed.
_REFERENCE = re.compile(r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_]\w*)(?::-(?P<default>[^}]*))?\})?")
_RETYPED_TAGS = frozenset(_TAG + name for name in ("int", "float", "bool", "null"))


@dataclass(frozen=True)
class LoadedConfig:
    """A decoded, checked config and where it came from."""

    config: Config
    path: Path
    base_dir: Path

    def resolve(self, relative: str) -> Path:
        """The absolute path of a file named in the config."""
        return resolve_path(self.base_dir, relative)

    @property
    def database_path(self) -> Path:
        """The SQLite database file."""
        return self.resolve(self.config.server.database)

    @property
    def files_dir(self) -> Path:
        """The folder /v1/files uploads and batch results are kept in."""
        return self.resolve(self.config.server.files_dir)

    @property
    def models_dir(self) -> Path:
        """The folder hf:// sources are downloaded into."""
        return self.resolve(self.config.server.models_dir)

    def model_path(self, model: ModelConfig) -> Path:
        """The local file a model's source names (a path, not an hf:// source)."""
        return self.resolve(model.source or "")


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> LoadedConfig:
    """Read and check the config file at `path`; `${VAR}` comes from `environ` (os.environ)."""
    file = os.fspath(path)
    absolute = Path(os.path.abspath(file))
    try:
        raw = absolute.read_bytes()
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(
            [ConfigProblem(file, 0, 0, "$", f"cannot read the config: {reason}")]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        problem = ConfigProblem(file, line, 1, "$", "the config is not UTF-8 text")
        raise ConfigError([problem]) from None
    return parse_config_text(
        text, file, absolute.parent, os.environ if environ is None else environ
    )


def parse_config_text(
    text: str, file: str, base_dir: Path, environ: Mapping[str, str]
) -> LoadedConfig:
    """Decode and check config `text`, naming it `file` in problems."""
    base = Path(os.path.abspath(base_dir))
    root = _compose(text, file)
    builder = _Builder(file, environ)
    data = builder.build(root, "$")
    if builder.problems:
        raise ConfigError(builder.problems)
    where = SourceMap(file, builder.values, builder.keys)
    config = decode_config(data, where)
    problems = check_config(config, where, base) + list(check_engines(config, where, base))
    if problems:
        raise ConfigError(problems)
    return LoadedConfig(config=config, path=resolve_path(base, file), base_dir=base)


def _compose(text: str, file: str) -> Node:
    """The YAML node tree of `text`; syntax errors and an empty file are problems."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        parts = [error.context or "", error.problem or ""]
        if error.context and error.context_mark and error.context_mark.line + 1 != line:
            parts[0] += f" (line {error.context_mark.line + 1})"
        message = "invalid YAML: " + ", ".join(part for part in parts if part)
        hint = "indent with spaces, not tabs" if "\\t" in (error.problem or "") else None
        raise ConfigError([ConfigProblem(file, line, column, "$", message, hint)]) from None
    except yaml.YAMLError as error:
        raise ConfigError([ConfigProblem(file, 1, 1, "$", f"invalid YAML: {error}")]) from None
    if root is None:
        hint = "start from the example radiance.yaml"
        raise ConfigError([ConfigProblem(file, 1, 1, "$", "the config is empty", hint)])
    return root


def _position(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    """Turns YAML nodes into plain data, recording positions and problems on the way."""

    def __init__(self, file: str, environ: Mapping[str, str]) -> None:
        self.file = file
        self.environ = environ
        self.values: dict[str, tuple[int, int]] = {}
        self.keys: dict[str, tuple[int, int]] = {}
        self.problems: list[ConfigProblem] = []
        self._constructor = SafeConstructor()
        self._resolver = Resolver()
        self._active: set[int] = set()

    def _problem(self, node: Node, path: str, message: str, hint: str | None = None) -> None:
        line, column = _position(node)
        self.problems.append(ConfigProblem(self.file, line, column, path, message, hint))

    def build(self, node: Node, path: str) -> object:
        """The plain value of `node`, found at `path`."""
        self.values.setdefault(path, _position(node))
        if id(node) in self._active:
            self._problem(node, path, "an alias refers to itself")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                return [self.build(item, child_path(path, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, ScalarNode)
            return self._scalar(node, path)
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: MappingNode, path: str) -> dict[object, object]:
        result: dict[object, object] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            child = child_path(path, key)
            if child in self.keys:
                line = self.keys[child][0]
                message = f"duplicate key `{key}` (first at line {line})"
                self._problem(key_node, child, message)
                continue
            self.keys[child] = _position(key_node)
            result[key] = self.build(value_node, child)
        return result

    def _key(self, node: Node, path: str) -> object:
        if node.tag == _TAG + "merge":
            self._problem(node, path, "YAML merge keys (`<<`) are not supported")
        elif isinstance(node, ScalarNode):
            return self._scalar(node, path, substitute=False)
        else:
            self._problem(node, path, "a mapping key must be a plain value")
        return f"<{node.tag}>"

    def _scalar(self, node: ScalarNode, path: str, *, substitute: bool = True) -> object:
        if node.tag == _TAG + "str":
            return self._substitute(node, path) if substitute else node.value
        if node.tag == _TAG + "timestamp":
            return node.value  # no field is a date: keep the text
        try:
            return self._constructor.construct_object(node, deep=True)
        except ConstructorError as error:
            self._problem(node, path, f"cannot read this value: {error.problem}")
            return None

    def _substitute(self, node: ScalarNode, path: str) -> object:
        """The scalar with `${VAR}` replaced; a plain one is re-typed as YAML would.

        Only int, float, bool and null are re-typed: `port: ${PORT}` is an int and
        `admin_key: ${ADMIN_KEY:-}` is null when the variable is unset.
        """
        text: str = node.value
        if "${" not in text:
            return text
        missing: list[str] = []
        malformed = False

        def replace(match: re.Match[str]) -> str:
            nonlocal malformed
            name, default = match["name"], match["default"]
            if match[0] == "$${":
                return "${"
            if name is None:
                malformed = True
                return match[0]
            value = self.environ.get(name)
            if default is not None and not value:
                return default
            if value is None:
                missing.append(name)
                return ""
            return value

        result = _REFERENCE.sub(replace, text)
        for name in dict.fromkeys(missing):
            hint = f"export {name}=... before starting, or write ${{{name}:-default}}"
            self._problem(node, path, f"environment variable `{name}` is not set", hint)
        if malformed:
            hint = "write ${NAME} or ${NAME:-default}; write $${ for a literal ${"
            self._problem(node, path, "`${` is not followed by a variable name and `}`", hint)
        if node.style is None:
            tag = self._resolver.resolve(ScalarNode, result, (True, False))  # type: ignore[no-untyped-call]
            if tag in _RETYPED_TAGS:
                return self._constructor.construct_object(ScalarNode(tag, result), deep=True)
        return result
