"""What an engine declares about itself, so the server needs no engine's name.

Each engine package has a `plugin.py` with one `EnginePlugin`: its backend config Struct
(tagged by `engine:` in radiance.yaml), the checks of its part of the config, what its
model source is (a file or a repository on the hub, a local path), how its replicas share
GPUs and how one replica is built. `backends.engines` lists the plugins; the server asks
it. A plugin imports its engine's libraries only when it builds a replica.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Protocol

import msgspec
from msgspec import Meta

from backends.base import Engine

PositiveInt = Annotated[int, Meta(ge=1)]
Seconds = Annotated[float, Meta(gt=0)]
HttpUrl = Annotated[str, Meta(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")]


class EngineConfig(
    msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True, tag_field="engine"
):
    """A backend of radiance.yaml: one engine's settings; `engine:` is the subclass's `tag`."""


class ModelFields(Protocol):
    """The fields of a model of radiance.yaml an engine reads."""

    @property
    def id(self) -> str: ...
    @property
    def source(self) -> str | None: ...
    @property
    def context_length(self) -> int: ...
    @property
    def embeddings(self) -> bool: ...
    @property
    def replicas(self) -> int: ...
    @property
    def tool_parser(self) -> str | None: ...
    @property
    def upstream_model(self) -> str | None: ...
    @property
    def autoscaling(self) -> object | None: ...
    @property
    def adapter(self) -> str | None: ...


@dataclass(frozen=True)
class Issue:
    """Something wrong in an engine's part of the config; `field` is relative to the
    model or backend ("" for itself), `key` places it at the field's key."""

    field: str
    message: str
    hint: str | None = None
    key: bool = False


@dataclass(frozen=True)
class ReplicaPlan:
    """What one replica of a model is built from."""

    backend_name: str
    model: ModelFields
    base_dir: Path  # relative paths of the config are taken from here
    log_dir: Path  # where an engine running processes of its own writes their logs
    fetched: Path | None = None  # the local copy of a hub source, once downloaded
    slot: int = 0  # the replica's number
    gpus: tuple[int, ...] | None = None  # its slice of the backend's GPUs
    # What the replicas of one backend share (an upstream pool), by backend name.
    shared: dict[str, Any] = field(default_factory=dict)


def resolve_path(base_dir: Path, name: str) -> Path:
    """`name` as an absolute path; a relative one is taken from `base_dir`."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else base_dir / path


class EnginePlugin(abc.ABC):
    """One engine as the server sees it before any replica runs."""

    # The `engine:` tag of its backends, and how messages name it.
    name: ClassVar[str]
    label: ClassVar[str]
    config: ClassVar[type[EngineConfig]]
    # Fields of a model that only this engine reads.
    model_fields: ClassVar[tuple[str, ...]] = ()
    # Whether Radiance renders the prompts and parses the answers of its models itself
    # (their `tool_parser` then names one of Radiance's own formats).
    parses_answers: ClassVar[bool] = False
    # What a model's source is, said in a message; None: its models have no source.
    source_kind: ClassVar[str | None] = None
    # What an hf:// source names for it: one file, or a whole repository.
    hub_source: ClassVar[Literal["file", "repository"]] = "file"
    # The file name ending of its sources, checked even where the backend is unknown.
    source_suffix: ClassVar[str | None] = None

    def check_backend(self, backend: Any, base_dir: Path) -> Iterator[Issue]:
        """Problems of a backend's settings that no type can say."""
        return iter(())

    def chat_template(self, model: ModelFields, base_dir: Path) -> str | None:
        """The chat template of a model, read without loading it (None when unknown: a
        file not downloaded yet, or an engine that renders its own prompts)."""
        return None

    def check_model(self, model: ModelFields, backend: Any) -> Iterator[Issue]:
        """Problems of a model on a backend of this engine, besides its source."""
        return iter(())

    def check_local_source(self, source: str, base_dir: Path) -> Iterator[Issue]:
        """Problems of a source that is not on the hub (`field` is unused)."""
        return iter(())

    def check_adapter(self, adapter: str, base_dir: Path) -> Iterator[Issue]:
        """Problems of a model's `adapter` (a LoRA on its source); `field` is unused."""
        return iter(())

    def local_source(self, source: str, base_dir: Path) -> Path | None:
        """The local file or folder `source` names, or None for a hub id."""
        return resolve_path(base_dir, source)

    def gpus(self, backend: Any) -> list[int] | None:
        """The GPUs a backend's replicas share evenly; None: they use none of their own."""
        return None

    @abc.abstractmethod
    def build(self, backend: Any, plan: ReplicaPlan) -> Engine:
        """The engine of one replica (not started)."""
