"""One deployment: what was asked, what runs, and how it looks through the API."""

from __future__ import annotations

import asyncio
import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from appliance.config import ModelConfig
from appliance.deployments.autoscaler import Autoscaler
from appliance.deployments.spec import Configuration, PricingBody, Scaling, scaling_of
from appliance.hub.progress import DownloadProgress
from appliance.management import wire
from appliance.registry import ServedModel
from backends.base import Engine
from backends.replicas import ReplicaSet

# pending -> downloading -> loading -> ready; updating while a change rolls out (it still
# serves), draining once deleted; failed with the reason.
Status = Literal["pending", "downloading", "loading", "ready", "updating", "draining", "failed"]


def iso(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat()


@dataclass(eq=False)
class Deployment:
    id: str
    model_id: str  # the model it runs: radiance.yaml's id, or the new model's
    source: str | None  # a new model's source; None runs the declared model's
    pricing: PricingBody | None  # a new model's pricing
    configuration: Configuration  # as asked (API) or as radiance.yaml gives it
    model: ModelConfig | None  # what runs, with the deployment's id; None if it cannot
    declared: bool
    served: ServedModel
    status: Status = "pending"
    error: str | None = None
    path: Path | None = None  # the GGUF file downloaded for an hf:// source
    target: int | None = None  # replicas wanted now (autoscaling moves it)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    adapter: str | None = None  # a LoRA adapter on the model (fine-tuned models)
    owner: str | None = None  # the key a fine-tuned model belongs to
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    autoscaler: Autoscaler = field(default_factory=Autoscaler)
    # Changes under way (bring-up, scaling, rollout); deleting cancels them.
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def replicas(self) -> ReplicaSet[Engine]:
        engine = self.served.engine
        assert isinstance(engine, ReplicaSet)
        return engine

    @property
    def scaling(self) -> Scaling:
        return scaling_of(self.model) if self.model else Scaling(replicas=1)

    @property
    def progress(self) -> DownloadProgress | None:
        return self.served.download


def deployment_view(dep: Deployment) -> wire.Deployment:
    """A deployment as the management API and webhooks show it (camelCase, like the request)."""
    model = dep.model
    scaling = dep.scaling
    conf = wire.DeploymentConfiguration(
        backend=model.backend if model else dep.configuration.backend,
        # Wanted now: as configured, or where autoscaling has taken it.
        replicas=scaling.replicas if dep.target is None else dep.target,
        auto_scaling=scaling.auto,
        min_replicas=scaling.min_replicas if scaling.auto else None,
        max_replicas=scaling.max_replicas if scaling.auto else None,
        cooldown_seconds=scaling.cooldown_seconds if scaling.auto else None,
        target_queue=scaling.target_queue if scaling.auto else None,
        context_length=model.context_length if model else dep.configuration.context_length,
    )
    replicas = []
    for replica in dep.replicas.replicas:
        stats = replica.engine.stats()
        replicas.append(
            wire.Replica(
                id=replica.id,
                status="draining" if replica.retired else replica.engine.status.value,
                requests_in_flight=replica.in_flight,
                requests_served=replica.served,
                running=stats.running,
                waiting=stats.waiting,
                load_seconds=stats.load_seconds,
                error=stats.error,
            )
        )
    progress = dep.progress
    return wire.Deployment(
        id=dep.id,
        name=dep.id,
        model_id=dep.model_id,
        source=model.source if model else dep.source,
        adapter=dep.adapter,
        declared=dep.declared,
        status=dep.status,
        error=dep.error,
        configuration=conf,
        ready_replicas=sum(1 for r in dep.replicas.replicas if r.ready),
        replicas=replicas,
        download=None if progress is None else progress.view(),
        created_at=iso(dep.created_at),
        updated_at=iso(dep.updated_at),
    )


def deployment_json(dep: Deployment) -> dict[str, Any]:
    """`deployment_view` as plain JSON, for webhook events."""
    shown: dict[str, Any] = msgspec.to_builtins(deployment_view(dep))
    return shown
