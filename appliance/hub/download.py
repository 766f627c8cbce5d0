"""Download a hub file into the models folder through huggingface_hub, and verify it.

The folder uses huggingface_hub's cache layout (`models--OWNER--REPO/blobs`, `snapshots`,
`refs`), so a file is stored once whatever revision names it, and other hub tools can
share the folder. A download whose connection drops resumes where it stopped (a Range
request, up to five times without progress); a file whose bytes do not hash to the
hub's ETag (the SHA-256 of an LFS file, the git blob SHA-1 of a small one) is removed and
refused. `download` blocks: call it from a thread (see `download_async`).

huggingface_hub writes each download to a temporary file of its own process and deletes
it on failure, so a process killed mid-download starts that file again next time.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import huggingface_hub
from huggingface_hub import errors as hub_errors
from huggingface_hub.utils.tqdm import tqdm as hub_tqdm

from appliance.hub.progress import DownloadProgress
from appliance.hub.source import HubSource

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_HASH_CHUNK = 1 << 20

ProgressCallback = Callable[[DownloadProgress], None]


class DownloadError(Exception):
    """A hub file could not be downloaded or did not match its checksum."""


def cached_file(source: HubSource, models_dir: Path) -> Path | None:
    """The file if a download of it is complete in `models_dir`; no network."""
    found = huggingface_hub.try_to_load_from_cache(
        source.repo_id, source.filename, cache_dir=models_dir, revision=source.revision
    )
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


def download(
    source: HubSource,
    models_dir: Path,
    *,
    on_progress: ProgressCallback | None = None,
    endpoint: str | None = None,
    show_bar: bool = False,
) -> Path:
    """Fetch `source` into `models_dir` (or find it there) and return the local file.

    `on_progress` is called on this thread with the same `DownloadProgress` each time it
    changes; `endpoint` overrides the hub's address (huggingface_hub reads `HF_ENDPOINT`
    otherwise); `show_bar` draws huggingface_hub's progress bar on stderr.
    """
    progress = DownloadProgress(str(source))
    changed = reporter(progress, on_progress)
    changed(state="checking")
    try:
        path = _fetch(source, models_dir, endpoint, _bar_class(progress, changed, show_bar))
        changed(state="verifying")
        _verify(source, path)
    except DownloadError as exc:
        changed(state="failed", error=str(exc))
        raise
    size = path.stat().st_size
    changed(state="done", path=str(path), done_bytes=size, total_bytes=size)
    return path


async def download_async(
    source: HubSource,
    models_dir: Path,
    *,
    on_progress: ProgressCallback | None = None,
    endpoint: str | None = None,
) -> Path:
    """`download` on a worker thread, so the event loop keeps serving meanwhile."""
    return await in_thread(
        functools.partial(download, source, models_dir, on_progress=on_progress, endpoint=endpoint)
    )


def reporter(
    progress: DownloadProgress, on_progress: ProgressCallback | None
) -> Callable[..., None]:
    """A function that sets fields of `progress` and tells `on_progress`."""

    def changed(**fields: Any) -> None:
        for name, value in fields.items():
            setattr(progress, name, value)
        if on_progress is not None:
            on_progress(progress)

    return changed


async def in_thread(work: Callable[[], Path]) -> Path:
    """A blocking download on a worker thread; cancelling abandons it."""
    path: Path = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    return path


def hub_reason(exc: Exception, repo_id: str, revision: str, filename: str | None = None) -> str:
    """Why the hub refused, in words; else huggingface_hub's own first line (network
    errors, a full disk, a size that does not match)."""
    if isinstance(exc, hub_errors.GatedRepoError):
        return f"{repo_id} is gated; accept its terms on the hub and set HF_TOKEN"
    if isinstance(exc, hub_errors.RepositoryNotFoundError):
        return f"no repository {repo_id} (or it is private: set HF_TOKEN)"
    if isinstance(exc, hub_errors.RevisionNotFoundError):
        return f"{repo_id} has no revision `{revision}`"
    if isinstance(exc, hub_errors.EntryNotFoundError) and filename is not None:
        return f"no file `{filename}` in {repo_id} at revision `{revision}`"
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _fetch(source: HubSource, models_dir: Path, endpoint: str | None, bar: type[Any]) -> Path:
    try:
        found = huggingface_hub.hf_hub_download(
            source.repo_id,
            source.filename,
            revision=source.revision,
            cache_dir=models_dir,
            endpoint=endpoint,
            tqdm_class=bar,
        )
    except Exception as exc:
        reason = hub_reason(exc, source.repo_id, source.revision, source.filename)
        raise DownloadError(f"cannot download {source}: {reason}") from exc
    return Path(found)


def _verify(source: HubSource, path: Path) -> None:
    """Hash the file against the blob's ETag; remove it from the cache if it differs."""
    blob = path.resolve()
    etag = blob.name if blob.parent.name == "blobs" else ""
    if _SHA256.match(etag):
        digest = hashlib.sha256()
        kind = "sha256"
    elif _GIT_SHA1.match(etag):
        digest = hashlib.sha1(f"blob {blob.stat().st_size}\0".encode(), usedforsecurity=False)
        kind = "git sha1"
    else:
        log.warning("%s: the hub sent no checksum (ETag `%s`); not verified", source, etag)
        return
    with blob.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != etag:
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise DownloadError(
            f"cannot download {source}: the file's {kind} is {digest.hexdigest()}, the hub "
            f"says {etag}; the corrupt file was removed"
        )


def _bar_class(progress: DownloadProgress, changed: Callable[..., None], show: bool) -> type[Any]:
    """A tqdm class for huggingface_hub that also reports to `progress`."""

    class Bar(hub_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if not show:
                kwargs["disable"] = True
            kwargs["desc"] = progress.source.rsplit("/", 1)[-1]  # not the URL
            super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
            total = kwargs.get("total")
            changed(
                state="downloading",
                done_bytes=int(kwargs.get("initial") or 0),
                total_bytes=int(total) if total else progress.total_bytes,
            )

        def update(self, n: float | None = 1) -> bool | None:
            changed(done_bytes=progress.done_bytes + int(n or 0))
            result: bool | None = super().update(n)
            return result

    return Bar
