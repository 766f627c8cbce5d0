"""Fine-tune files: placeholder until the full checks land."""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ExampleError:
    line: int
    param: str | None
    message: str


def check_file(path: pathlib.Path) -> list[ExampleError]:
    errors: list[ExampleError] = []
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                errors.append(ExampleError(number, None, "not valid JSON"))
                continue
            if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
                errors.append(ExampleError(number, "messages", "missing `messages`"))
    return errors
