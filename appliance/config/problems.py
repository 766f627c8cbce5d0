"""Problems in radiance.yaml and where they are: the words every config check speaks.

A `ConfigProblem` names the file, the line and column, the `$.path` and what is wrong; a
`SourceMap` knows where each `$.path` of the YAML document starts.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


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


@dataclass(frozen=True)
class SourceMap:
    """Where each `$.path` of the YAML document starts, for values and for keys."""

    file: str
    values: Mapping[str, tuple[int, int]]
    keys: Mapping[str, tuple[int, int]]

    def locate(self, path: str, *, key: bool = False) -> tuple[int, int]:
        """Line and column of `path` (of its key if `key`), else of its nearest parent."""
        if key and path in self.keys:
            return self.keys[path]
        if path in self.values:
            return self.values[path]
        parents = [p for p in self.values if path.startswith(p) and path[len(p)] in ".["]
        return self.values[max(parents, key=len)] if parents else (1, 1)

    def problem(
        self, path: str, message: str, hint: str | None = None, *, key: bool = False
    ) -> ConfigProblem:
        """A problem located at `path`."""
        line, column = self.locate(path, key=key)
        return ConfigProblem(self.file, line, column, path, message, hint)
