"""Download a whole hub repository (a model folder for vLLM) into the models folder.

All files are fetched at the commit the revision names then, each through `download`
(resumed, hashed against its ETag), into huggingface_hub's cache layout; a marker file
written last says the snapshot is complete, so a restart finds it without the network.
"""

from __future__ import annotations

import functools
from pathlib import Path

import huggingface_hub

from appliance.hub.download import (
    DownloadError,
    ProgressCallback,
    download,
    hub_reason,
    in_thread,
    reporter,
)
from appliance.hub.progress import DownloadProgress
from appliance.hub.source import HubRepo

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
    changed = reporter(progress, on_progress)
    changed(state="checking")
    try:
        info = huggingface_hub.HfApi(endpoint=endpoint).model_info(
            repo.repo_id, revision=repo.revision, files_metadata=True
        )
    except Exception as exc:
        reason = hub_reason(exc, repo.repo_id, repo.revision)
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
    return await in_thread(
        functools.partial(
            download_repo, repo, models_dir, on_progress=on_progress, endpoint=endpoint
        )
    )
