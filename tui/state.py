"""What the console knows: the last live snapshot, rates and their history, the request tail,
and the listings (keys, deployments) of the screen that shows them.

Rates come from the difference between two snapshots' cumulative counters over the
server's own clock, so they do not depend on when the console happened to poll.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from tui.client import ServerError
from tui.wire import (
    BatchRow,
    Deployment,
    FineTuningJobView,
    KeyInfo,
    LiveSnapshot,
    ModelLive,
    RecentRequest,
    Tier,
)

HISTORY = 180  # samples kept per model for the sparklines: three minutes at one per second
TAIL = 500  # requests kept for the live tail


@dataclass
class ModelRates:
    """Tokens and requests per second of one model, newest last."""

    tokens: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    requests: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))

    @property
    def tokens_now(self) -> float | None:
        return self.tokens[-1] if self.tokens else None

    @property
    def requests_now(self) -> float | None:
        return self.requests[-1] if self.requests else None


@dataclass
class ConsoleState:
    url: str
    live: LiveSnapshot | None = None
    rates: dict[str, ModelRates] = field(default_factory=dict)
    tail: deque[RecentRequest] = field(default_factory=lambda: deque(maxlen=TAIL))
    keys: list[KeyInfo] | None = None
    deployments: list[Deployment] | None = None
    batches: list[BatchRow] | None = None  # the newest batches, for the requests screen
    fine_tuning: list[FineTuningJobView] | None = None  # the newest jobs, likewise
    tiers: list[Tier] | None = None
    problem: ServerError | None = None
    retry_in: float = 0.0

    @property
    def since(self) -> int:
        """The last request sequence number seen, for the next poll."""
        return self.live.sequence if self.live else 0

    @property
    def models(self) -> list[ModelLive]:
        return self.live.models if self.live else []

    def model(self, model_id: str) -> ModelLive | None:
        """The live figures of a model (a deployment's, by its id), if the snapshot has it."""
        return next((model for model in self.models if model.id == model_id), None)

    def take(self, snapshot: LiveSnapshot) -> list[RecentRequest]:
        """Fold in a new snapshot; returns the requests that are new to the tail."""
        previous = self.live
        if previous is not None and snapshot.sequence < previous.sequence:
            # The server restarted: its counters and sequence numbers start again.
            previous = None
            self.rates.clear()
            self.tail.clear()
        if previous is not None:
            elapsed = snapshot.time - previous.time
            before = {model.id: model.totals for model in previous.models}
            for model in snapshot.models:
                old = before.get(model.id)
                if old is None or elapsed <= 0:
                    continue
                rates = self.rates.setdefault(model.id, ModelRates())
                tokens = model.totals.generated_tokens - old.generated_tokens
                requests = model.totals.requests - old.requests
                rates.tokens.append(max(0, tokens) / elapsed)
                rates.requests.append(max(0, requests) / elapsed)
        known = previous.sequence if previous else 0
        fresh = [item for item in snapshot.recent if item.seq > known]
        self.tail.extend(fresh)
        self.live = snapshot
        self.problem = None
        return fresh
