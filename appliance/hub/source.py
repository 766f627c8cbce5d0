"""`hf://OWNER/REPO[@REVISION]/PATH`: a model file in a hub repository, and whole repositories.

REVISION is a branch, tag or commit hash without `/` (default `main`). PATH ends as the files
of the model's engine do (`.gguf` for llama.cpp): the caller says which ending.

Parsing knows nothing of the network or the cache, so the config checks can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "hf://"
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_SOURCE = re.compile(
    rf"^hf://(?P<owner>{_PART})/(?P<repo>{_PART})(?:@(?P<revision>[A-Za-z0-9._-]{{1,128}}))?"
    r"/(?P<path>[^@]+)$"
)


class BadHubSource(ValueError):
    """A source that starts with hf:// but is not OWNER/REPO/PATH with the right ending."""


def is_hub_source(source: str) -> bool:
    return source.startswith(SCHEME)


def shape(suffix: str) -> str:
    """How a hub file source whose files end with `suffix` is written."""
    return f"write hf://OWNER/REPO/PATH{suffix}, or hf://OWNER/REPO@REVISION/PATH{suffix}"


@dataclass(frozen=True)
class HubSource:
    repo_id: str  # OWNER/REPO
    filename: str  # the file's path inside the repository
    revision: str = "main"  # a branch, a tag or a commit hash

    @classmethod
    def parse(cls, source: str, suffix: str) -> HubSource:
        """The parts of an hf:// source of a file ending with `suffix`; BadHubSource says
        what is wrong."""
        match = _SOURCE.match(source)
        if match is None:
            raise BadHubSource(f"`{source}` is not a hub source")
        path = match["path"]
        parts = path.split("/")
        if any(part in ("", ".", "..") for part in parts) or "\\" in path:
            raise BadHubSource(f"`{source}` has an empty, `.` or `..` part in its file path")
        if not path.endswith(suffix):
            raise BadHubSource(f"`{source}` does not name a {suffix} file")
        return cls(f"{match['owner']}/{match['repo']}", path, match["revision"] or "main")

    def __str__(self) -> str:
        revision = "" if self.revision == "main" else f"@{self.revision}"
        return f"{SCHEME}{self.repo_id}{revision}/{self.filename}"


_REPO = re.compile(
    rf"^(?:hf://)?(?P<owner>{_PART})/(?P<repo>{_PART})(?:@(?P<revision>[A-Za-z0-9._-]{{1,128}}))?/?$"
)


@dataclass(frozen=True)
class HubRepo:
    """A whole hub repository (a model folder for vLLM): `hf://OWNER/REPO[@REVISION]` or
    a bare `OWNER/REPO`."""

    repo_id: str
    revision: str = "main"

    @classmethod
    def parse(cls, source: str) -> HubRepo | None:
        """The repository `source` names, or None if it is not one (a path, a GGUF file)."""
        match = _REPO.match(source)
        if match is None:
            return None
        return cls(f"{match['owner']}/{match['repo']}", match["revision"] or "main")

    def file(self, path: str, revision: str | None = None) -> HubSource:
        return HubSource(self.repo_id, path, revision or self.revision)

    def __str__(self) -> str:
        revision = "" if self.revision == "main" else f"@{self.revision}"
        return f"{SCHEME}{self.repo_id}{revision}"
