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
from appliance.hub.source import HubRepo, HubSource

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

    def changed(**fields: Any) -> None:
        for name, value in fields.items():
            setattr(progress, name, value)
        if on_progress is not None:
            on_progress(progress)

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

    def run() -> Path:
        return download(source, models_dir, on_progress=on_progress, endpoint=endpoint)

    return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)


# Written into a snapshot folder once every file of it is downloaded and verified.
COMPLETE = ".radiance-complete"


def _repo_folder(repo: HubRepo, models_dir: Path) -> Path:
    return models_dir / ("models--" + repo.repo_id.replace("/", "--"))


def cached_repo(repo: HubRepo, models_dir: Path) -> Path | None:
    """The snapshot folder of `repo` if a download of all its files completed; no network."""
    folder = _repo_folder(repo, models_dir)
    ref = folder / "refs" / repo.revision
    commit = ref.read_text().strip() if ref.is_file() else repo.revision
    snapshot = folder / "snapshots" / commit
    return snapshot if (snapshot / COMPLETE).is_file() else None


def download_repo(
    repo: HubRepo,
    models_dir: Path,
    *,
    on_progress: ProgressCallback | None = None,
    endpoint: str | None = None,
    show_bar: bool = False,
) -> Path:
    """Fetch every file of `repo` at one commit into `models_dir`; the snapshot folder.

    Each file goes the way of `download` (resumed, hashed against its ETag); progress
    counts the bytes of the whole repository.
    """
    progress = DownloadProgress(str(repo))

    def changed(**fields: Any) -> None:
        for name, value in fields.items():
            setattr(progress, name, value)
        if on_progress is not None:
            on_progress(progress)

    changed(state="checking")
    try:
        info = huggingface_hub.HfApi(endpoint=endpoint).model_info(
            repo.repo_id, revision=repo.revision, files_metadata=True
        )
    except Exception as exc:
        reason = _reason(exc, repo.repo_id, repo.revision)
        changed(state="failed", error=f"cannot download {repo}: {reason}")
        raise DownloadError(progress.error) from exc
    commit = info.sha or repo.revision
    files = [(s.rfilename, s.size or 0) for s in info.siblings or []]
    changed(state="downloading", total_bytes=sum(size for _, size in files) or None)
    done = 0
    path = None
    for name, size in files:

        def file_changed(state: DownloadProgress, before: int = done) -> None:
            if state.state in ("downloading", "done"):
                changed(done_bytes=before + state.done_bytes)

        try:
            path = download(
                repo.file(name, commit),
                models_dir,
                on_progress=file_changed,
                endpoint=endpoint,
                show_bar=show_bar,
            )
        except DownloadError as exc:
            changed(state="failed", error=str(exc))
            raise
        done += path.stat().st_size if path.exists() else size
    snapshot = _repo_folder(repo, models_dir) / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    if commit != repo.revision:
        refs = _repo_folder(repo, models_dir) / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        (refs / repo.revision).write_text(commit)
    (snapshot / COMPLETE).write_text("\n".join(name for name, _ in files) + "\n")
    changed(state="done", path=str(snapshot), done_bytes=done, total_bytes=done)
    return snapshot


async def download_repo_async(
    repo: HubRepo,
    models_dir: Path,
    *,
    on_progress: ProgressCallback | None = None,
    endpoint: str | None = None,
) -> Path:
    """`download_repo` on a worker thread."""

    def run() -> Path:
        return download_repo(repo, models_dir, on_progress=on_progress, endpoint=endpoint)

    return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)


def _reason(exc: Exception, repo_id: str, revision: str) -> str:
    if isinstance(exc, hub_errors.GatedRepoError):
        return f"{repo_id} is gated; accept its terms on the hub and set HF_TOKEN"
    if isinstance(exc, hub_errors.RepositoryNotFoundError):
        return f"no repository {repo_id} (or it is private: set HF_TOKEN)"
    if isinstance(exc, hub_errors.RevisionNotFoundError):
        return f"{repo_id} has no revision `{revision}`"
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _fetch(source: HubSource, models_dir: Path, endpoint: str | None, bar: type[Any]) -> Path:
    where = f"{source.repo_id} at revision `{source.revision}`"
    try:
        found = huggingface_hub.hf_hub_download(
            source.repo_id,
            source.filename,
            revision=source.revision,
            cache_dir=models_dir,
            endpoint=endpoint,
            tqdm_class=bar,
        )
    except hub_errors.GatedRepoError:
        raise DownloadError(
            f"cannot download {source}: {source.repo_id} is gated; accept its terms on the "
            "hub and set HF_TOKEN"
        ) from None
    except hub_errors.RepositoryNotFoundError:
        raise DownloadError(
            f"cannot download {source}: no repository {source.repo_id} (or it is private: "
            "set HF_TOKEN)"
        ) from None
    except hub_errors.RevisionNotFoundError:
        raise DownloadError(
            f"cannot download {source}: {source.repo_id} has no revision `{source.revision}`"
        ) from None
    except hub_errors.EntryNotFoundError:
        raise DownloadError(
            f"cannot download {source}: no file `{source.filename}` in {where}"
        ) from None
    except Exception as exc:
        # Network errors, hub errors, a full disk, a size that does not match: the
        # message is huggingface_hub's own, first line only.
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
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
