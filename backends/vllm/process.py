"""A child process group: started in its own session, its output captured, stopped whole.

vLLM's API server starts engine-core and worker processes of its own; they share the
server's process group, so signalling the group frees every process (and the GPU memory
they hold). On Linux the child also gets SIGTERM if Radiance dies without stopping it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import pathlib
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import IO

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the child binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildGroup:
    """One started command; `tail` holds its last output lines, `log_path` all of them."""

    def __init__(self, name: str, log_path: pathlib.Path, keep_lines: int = 40) -> None:
        self.name = name
        self.log_path = log_path
        self.tail: collections.deque[str] = collections.deque(maxlen=keep_lines)
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._log_file: IO[str] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, command: Sequence[str], env: Mapping[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("a", buffering=1)
        self._log_file.write(f"==> {' '.join(command)}\n")
        self.tail.clear()
        self.process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._reader = asyncio.create_task(self._read(), name=f"log-{self.name}")

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.tail.append(line)
            if self._log_file is not None:
                self._log_file.write(line + "\n")
            log.debug("%s: %s", self.name, line)

    async def wait(self) -> int:
        assert self.process is not None
        code = await self.process.wait()
        if self._reader is not None and not self._reader.done():
            # Workers left behind may hold the output open: read on, but wait 5 s at most
            # (without cancelling the reader, which a later wait would then trip over).
            await asyncio.wait({self._reader}, timeout=5)
        return code

    def signal_group(self, sig: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    async def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the group, SIGKILL it after `grace` seconds; always reap the leader."""
        if self.process is None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.wait(), grace)
        except TimeoutError:
            log.warning("%s did not stop within %.0f s; killing it", self.name, grace)
            self.signal_group(signal.SIGKILL)
            await self.wait()
        # Workers left behind by a leader that exited first.
        self.signal_group(signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def last_lines(self, count: int = 12) -> str:
        return "\n".join(list(self.tail)[-count:])
