"""Where a deployment comes from: radiance.yaml, the store, or a caller's own engine.

Each function makes the `Deployment` and, unless the caller routes it already, the
`ServedModel` that requests reach it by in the registry; its replica set starts empty
(a caller's engine: that engine, as one replica) and reports `loading` until it is up.
"""

from __future__ import annotations

from appliance.config import LoadedConfig, ModelConfig
from appliance.deployments.deployment import Deployment
from appliance.deployments.spec import DeploymentInvalid, declared_configuration, plan_model
from appliance.registry import ModelRegistry, ServedModel
from appliance.state.deployments import StoredDeployment
from backends.base import EngineStatus
from backends.replicas import Replica, ReplicaSet


def _routed(dep_id: str, model_id: str, model: ModelConfig, registry: ModelRegistry) -> ServedModel:
    served = ServedModel(
        model,
        model.backend,
        ReplicaSet(dep_id),
        parent=None if model_id == dep_id else model_id,
    )
    registry.add(served)
    return served


def _loading(served: ServedModel) -> ServedModel:
    engine = served.engine
    if isinstance(engine, ReplicaSet):
        engine.hold(EngineStatus.LOADING)
    return served


def declared(model: ModelConfig, registry: ModelRegistry) -> Deployment:
    """A model of radiance.yaml."""
    served = _loading(_routed(model.id, model.id, model, registry))
    return Deployment(
        id=model.id,
        model_id=model.id,
        source=None,
        pricing=None,
        configuration=declared_configuration(model),
        model=model,
        declared=True,
        served=served,
    )


def adopted(served: ServedModel) -> Deployment:
    """A model a caller routes already, with its own engine: one replica, as it is."""
    if not isinstance(served.engine, ReplicaSet):
        served.engine = ReplicaSet(served.id, [Replica(f"{served.id}-0", 0, served.engine)])
    return Deployment(
        id=served.id,
        model_id=served.id,
        source=None,
        pricing=None,
        configuration=declared_configuration(served.config),
        model=served.config,
        declared=True,
        served=_loading(served),
    )


def stored(row: StoredDeployment, model: ModelConfig | None, registry: ModelRegistry) -> Deployment:
    """A deployment made through the API; `model` None if it can no longer be planned."""
    config = model or ModelConfig(id=row.id, backend="")
    served = _routed(row.id, row.model_id, config, registry)
    served.owner = row.owner
    return Deployment(
        id=row.id,
        model_id=row.model_id,
        source=row.source,
        pricing=row.pricing,
        configuration=row.configuration,
        model=model,
        declared=False,
        served=_loading(served),
        created_at=row.created_at,
        updated_at=row.updated_at,
        adapter=row.adapter,
        owner=row.owner,
    )


def restored(loaded: LoadedConfig, row: StoredDeployment, registry: ModelRegistry) -> Deployment:
    """A stored deployment, deployed again; failed if radiance.yaml no longer allows it."""
    try:
        model = plan_model(
            loaded, row.id, row.model_id, row.source, row.pricing, row.configuration, row.adapter
        )
    except DeploymentInvalid as exc:
        dep = stored(row, None, registry)
        dep.error = f"radiance.yaml no longer allows this deployment: {exc}"
        return dep
    return stored(row, model, registry)
