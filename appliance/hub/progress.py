"""How far a download has got, for the log, the API and the console."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from appliance.management.wire import Download

DownloadState = Literal["checking", "downloading", "verifying", "done", "failed"]


@dataclass
class DownloadProgress:
    """Written by the download thread, read by anyone (plain attribute writes)."""

    source: str
    state: DownloadState = "checking"
    done_bytes: int = 0
    total_bytes: int | None = None
    error: str | None = None
    path: str | None = None

    @property
    def percent(self) -> float | None:
        if not self.total_bytes:
            return None
        return min(100.0, 100.0 * self.done_bytes / self.total_bytes)

    def view(self) -> Download:
        percent = self.percent
        return Download(
            source=self.source,
            state=self.state,
            done_bytes=self.done_bytes,
            total_bytes=self.total_bytes,
            percent=None if percent is None else round(percent, 1),
            error=self.error,
        )

    def as_json(self) -> dict[str, Any]:
        """`view` as plain JSON, for an admin's /v1/models."""
        shown: dict[str, Any] = msgspec.to_builtins(self.view())
        return shown


class ProgressLog:
    """A progress callback that logs one line per tenth of the file, not a flood."""

    def __init__(self, logger: logging.Logger, label: str, step: float = 10.0) -> None:
        self._log = logger
        self._label = label
        self._step = step
        self._next = 0.0
        self._state: DownloadState | None = None

    def __call__(self, progress: DownloadProgress) -> None:
        if progress.state != self._state:
            self._state = progress.state
            if progress.state == "downloading":
                size = progress.total_bytes
                shown = f"{size / 1e6:.1f} MB" if size else "size unknown"
                self._log.info("%s: downloading %s (%s)", self._label, progress.source, shown)
            elif progress.state == "verifying":
                self._log.info("%s: verifying the checksum", self._label)
        percent = progress.percent
        if progress.state == "downloading" and percent is not None and percent >= self._next:
            done = int(percent // self._step) * self._step
            self._log.info(
                "%s: %3.0f%% (%.1f of %.1f MB)",
                self._label,
                done,
                progress.done_bytes / 1e6,
                (progress.total_bytes or 0) / 1e6,
            )
            self._next = done + self._step
