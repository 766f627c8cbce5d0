"""Turn a stream of token bytes into text deltas, honouring stop strings.

Bytes are decoded incrementally, so a character split across tokens is emitted once it
is whole. Text that could be the start of a stop string is held back until it is known
not to be one; when a stop string appears, the text before it is released and the
sequence ends (the stop string itself is never sent, as in OpenAI's API).
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class StopTextAssembler:
    def __init__(self, stop: Sequence[str]) -> None:
        self._stop = tuple(s for s in stop if s)
        self._hold = max((len(s) for s in self._stop), default=0)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self.stopped = False

    def feed(self, data: bytes) -> str:
        """Add a token's bytes; return the text that can be sent now."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(data)
        found = [at for at in (self._pending.find(stop) for stop in self._stop) if at >= 0]
        if found:
            self.stopped = True
            released, self._pending = self._pending[: min(found)], ""
            return released
        if not self._hold:
            released, self._pending = self._pending, ""
            return released
        keep = self._held_suffix()
        released = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return released

    def flush(self) -> str:
        """The text still held back, at the end of a sequence."""
        if self.stopped:
            return ""
        released = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return released

    def _held_suffix(self) -> int:
        """Length of the longest tail of pending text that starts some stop string."""
        text = self._pending
        longest = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if stop.startswith(text[-size:]):
                    longest = size
                    break
        return longest
