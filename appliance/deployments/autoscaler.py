"""When an autoscaled deployment should gain or lose a replica.

Up: as soon as `target_queue` requests per replica are waiting. Down: once the requests
in flight would fit in one replica fewer with none waiting, and that has lasted a whole
cool-down. Never two steps within one cool-down, so replicas do not flap; never outside
minReplicas..maxReplicas.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.deployments.spec import Scaling


@dataclass
class Load:
    """What a deployment's ready replicas carry now."""

    replicas: int  # ready replicas
    running: int  # requests being generated
    waiting: int  # requests queued behind them
    parallel: int  # sequences one replica decodes at once


@dataclass
class Autoscaler:
    """The scaling state of one deployment; `decide` is called about once a second."""

    last_change: float = 0.0
    quiet_since: float | None = None

    def decide(self, scaling: Scaling, load: Load, now: float) -> int:
        """The replica count to run next (the current count to stay)."""
        current = load.replicas
        if not scaling.auto or current == 0:
            return current
        if current < scaling.min_replicas:
            return self._change(scaling.min_replicas, now)
        if current > scaling.max_replicas:
            return self._change(scaling.max_replicas, now)
        cooled = now - self.last_change >= scaling.cooldown_seconds
        if load.waiting >= scaling.target_queue * current:
            self.quiet_since = None
            if current < scaling.max_replicas and cooled:
                return self._change(current + 1, now)
            return current
        fits_in_fewer = load.waiting == 0 and load.running <= (current - 1) * load.parallel
        if not fits_in_fewer or current <= scaling.min_replicas:
            self.quiet_since = None
            return current
        if self.quiet_since is None:
            self.quiet_since = now
        if cooled and now - self.quiet_since >= scaling.cooldown_seconds:
            return self._change(current - 1, now)
        return current

    def _change(self, count: int, now: float) -> int:
        self.last_change = now
        self.quiet_since = None
        return count
