"""`radiance up` with parts of the request path taken out, to see what each costs.

For attribution only: each part taken out breaks a promise the gateway makes, so these
servers are never a configuration. `bench/gateway.py --without PART` runs them beside
the real one, in the same rounds.

    python bench/gateway_parts.py ledger,log -- up radiance.yaml --port 8000

Parts:

- ``ledger``: rows are not written (no SQLite commit before the response ends);
- ``metrics``: no Prometheus observations and no live figures;
- ``watch``: no task watching for the client going away while the answer is made;
- ``assembly``: a non-streamed request goes upstream non-streamed (no chunks to decode,
  count and assemble; an abandoned one could no longer be billed for what was made);
- ``log``: no info line per request.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

PARTS = ("ledger", "metrics", "watch", "assembly", "log")


def take_out(parts: set[str]) -> None:
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"no such part: {', '.join(sorted(unknown))} (parts: {PARTS})")
    if "ledger" in parts:
        from appliance.state import ledger

        async def record(self: Any, row: Any) -> None:
            return None

        ledger.Ledger.record = record  # type: ignore[method-assign]
    if "metrics" in parts:
        from appliance import live, metrics

        metrics.Metrics.observe = lambda self, row: None  # type: ignore[method-assign]
        live.LiveStats.finished = lambda self, row, generated_live: None  # type: ignore[method-assign]
        live.LiveStats.generated = lambda self, model, tokens: None  # type: ignore[method-assign]
    if "watch" in parts:
        from appliance.openai import inference

        @contextlib.asynccontextmanager
        async def unwatched(receive: Any, ctx: Any) -> AsyncIterator[None]:
            yield

        inference.until_disconnected = unwatched
    if "assembly" in parts:
        from appliance.openai import passthrough

        passthrough._streamable = lambda data: False
    if "log" in parts:  # a logger of its own at warning: `radiance up` sets the usual ones
        from appliance import request_context

        quiet = logging.getLogger("radiance.requests.bench")
        quiet.setLevel(logging.WARNING)
        request_context.log = quiet


def main() -> None:
    parts, separator, *command = sys.argv[1:]
    if separator != "--":
        raise SystemExit(__doc__)
    take_out({part for part in parts.split(",") if part})
    from appliance.cli import main as radiance

    sys.argv = ["radiance", *command]
    radiance()


if __name__ == "__main__":
    main()
