"""What a deployment is asked to be, and the model config it runs.

A deployment runs a model, one declared in radiance.yaml (`modelId` names it) or a new
one from a `source` given in the request, on a declared backend with some replicas. The
API speaks camelCase, like the request that creates one:

    {"modelId": "qwen2.5-0.5b", "name": "qwen-small",
     "configuration": {"backend": "cpu", "replicas": 2, "autoScaling": true,
                       "minReplicas": 1, "maxReplicas": 3}}

`plan_model` turns a spec into the `ModelConfig` the engines load, checked by the same
rules as radiance.yaml (the backend exists, the source fits its engine, the file is a
GGUF file or an hf:// source), so an API deployment can be nothing a config could not.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from appliance.config import AutoscalingConfig, LoadedConfig, ModelConfig, Pricing
from appliance.config.checks import check_config
from appliance.config.engine_checks import check_engines
from appliance.config.problems import SourceMap
from appliance.config.schema import Name, Usd
from backends.engines import engine_of, plugin_of

# A deployment's name is one path segment: /v1/models/{name}/completions.
DeploymentName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
MAX_REPLICAS = 64


class Wire(msgspec.Struct, forbid_unknown_fields=True, rename="camel", omit_defaults=True):
    """camelCase on the wire; an unknown field is an error naming it."""


class Configuration(Wire, kw_only=True):
    """How a deployment runs; a field left out takes the model's (or the default) value."""

    backend: str | None = None
    replicas: Annotated[int, Meta(ge=1, le=MAX_REPLICAS)] | None = None
    auto_scaling: bool | None = None
    min_replicas: Annotated[int, Meta(ge=1, le=MAX_REPLICAS)] | None = None
    max_replicas: Annotated[int, Meta(ge=1, le=MAX_REPLICAS)] | None = None
    # Seconds between two scaling steps; also how long a lull lasts before one fewer.
    cooldown_seconds: Annotated[float, Meta(gt=0, le=86400)] | None = None
    # Requests waiting per replica at which one more replica starts.
    target_queue: Annotated[int, Meta(ge=1, le=100000)] | None = None
    context_length: Annotated[int, Meta(ge=1)] | None = None


class PricingBody(Wire, kw_only=True):
    prompt: Usd = "0"
    completion: Usd = "0"


class CreateDeploymentBody(Wire, kw_only=True):
    """A new deployment; `name` is how clients call it (`model` in their requests)."""

    model_id: Name
    name: DeploymentName | None = None
    # A new model's file (hf://OWNER/REPO/FILE.gguf or a path) or vLLM hub id / folder.
    source: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None
    pricing: PricingBody | None = None
    configuration: Configuration = msgspec.field(default_factory=Configuration)
    # A LoRA adapter on the model (llamacpp: a GGUF LoRA file; vllm: a PEFT folder).
    adapter: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None


class UpdateDeploymentBody(Wire, kw_only=True):
    """Changes to a deployment's configuration; fields left out stay as they are."""

    configuration: Configuration


class Scaling(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment's replica count and its autoscaling bounds, resolved."""

    replicas: int
    auto: bool = False
    min_replicas: int = 1
    max_replicas: int = 1
    cooldown_seconds: float = 30.0
    target_queue: int = 2

    @property
    def most(self) -> int:
        """The most replicas this deployment may run at once."""
        return self.max_replicas if self.auto else self.replicas

    def clamp(self, count: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, count)) if self.auto else count


class DeploymentInvalid(ValueError):
    """A spec no server could run; `field` names the part of the request at fault."""

    def __init__(self, message: str, field: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.hint = hint


def merge(old: Configuration, new: Configuration) -> Configuration:
    """`old` with the fields `new` sets."""
    fields = {
        name: getattr(new, name) if getattr(new, name) is not None else getattr(old, name)
        for name in Configuration.__struct_fields__
    }
    return Configuration(**fields)


def declared_configuration(model: ModelConfig) -> Configuration:
    """The configuration radiance.yaml gives a model."""
    auto = model.autoscaling
    return Configuration(
        backend=model.backend,
        replicas=model.replicas,
        auto_scaling=auto is not None,
        min_replicas=auto.min_replicas if auto else None,
        max_replicas=auto.max_replicas if auto else None,
        cooldown_seconds=auto.cooldown_seconds if auto else None,
        target_queue=auto.target_queue if auto else None,
        context_length=model.context_length,
    )


def scaling_of(model: ModelConfig) -> Scaling:
    auto = model.autoscaling
    if auto is None:
        return Scaling(replicas=model.replicas, min_replicas=1, max_replicas=model.replicas)
    scaling = Scaling(
        replicas=model.replicas,
        auto=True,
        min_replicas=auto.min_replicas,
        max_replicas=auto.max_replicas,
        cooldown_seconds=auto.cooldown_seconds,
        target_queue=auto.target_queue,
    )
    return msgspec.structs.replace(scaling, replicas=scaling.clamp(model.replicas))


def check_scaling_fields(asked: Configuration, result: Configuration) -> None:
    """Autoscaling bounds in a request need autoscaling on in the result."""
    if result.auto_scaling:
        return
    for name, wire in (
        ("min_replicas", "minReplicas"),
        ("max_replicas", "maxReplicas"),
        ("cooldown_seconds", "cooldownSeconds"),
        ("target_queue", "targetQueue"),
    ):
        if getattr(asked, name) is not None:
            raise DeploymentInvalid(
                f"`{wire}` needs `autoScaling: true`",
                f"configuration.{wire}",
                "set autoScaling, or give a fixed count with `replicas`",
            )


def _autoscaling(conf: Configuration) -> AutoscalingConfig | None:
    if not conf.auto_scaling:
        return None
    low = conf.min_replicas or 1
    high = conf.max_replicas or max(low, conf.replicas or 1)
    if low > high:
        raise DeploymentInvalid(
            f"minReplicas ({low}) is more than maxReplicas ({high})", "configuration.minReplicas"
        )
    return AutoscalingConfig(
        min_replicas=low,
        max_replicas=high,
        cooldown_seconds=conf.cooldown_seconds or 30.0,
        target_queue=conf.target_queue or 2,
    )


def plan_model(
    loaded: LoadedConfig,
    name: str,
    model_id: str,
    source: str | None,
    pricing: PricingBody | None,
    conf: Configuration,
    adapter: str | None = None,
) -> ModelConfig:
    """The model config of a deployment, checked as radiance.yaml would check it; with an
    `adapter`, a declared model's `pricing.fine_tuned` prices apply when it has them."""
    config = loaded.config
    base = next((m for m in config.models if m.id == model_id), None)
    if base is None and source is None:
        known = sorted(m.id for m in config.models)
        raise DeploymentInvalid(
            f"model `{model_id}` is not declared in radiance.yaml",
            "modelId",
            f"declared: {', '.join(known) or 'none'}; or give a `source` for a new model",
        )
    if base is not None and source is not None and source != base.source:
        raise DeploymentInvalid(
            f"model `{model_id}` is declared in radiance.yaml with its own source",
            "source",
            "leave `source` out to deploy it, or give the new model another modelId",
        )
    if base is not None and pricing is not None:
        raise DeploymentInvalid(
            f"model `{model_id}` has its pricing in radiance.yaml", "pricing", "leave it out"
        )
    backend = conf.backend or (base.backend if base else None)
    if backend is None:
        raise DeploymentInvalid(
            "a new model needs `configuration.backend`",
            "configuration.backend",
            f"declared backends: {', '.join(sorted(config.backends)) or 'none'}",
        )
    if backend not in config.backends:
        raise DeploymentInvalid(
            f"backend `{backend}` is not declared in radiance.yaml",
            "configuration.backend",
            f"declared backends: {', '.join(sorted(config.backends)) or 'none'}",
        )
    fields: dict[str, Any] = {
        "id": name,
        "backend": backend,
        "autoscaling": _autoscaling(conf),
        "replicas": conf.replicas or (base.replicas if base else 1),
        "aliases": [],
        "adapter": adapter,
    }
    if conf.context_length is not None:
        fields["context_length"] = conf.context_length
    if base is None:
        fields["source"] = source
        if pricing is not None:
            fields["pricing"] = Pricing(prompt=pricing.prompt, completion=pricing.completion)
        model = ModelConfig(**fields)
    else:
        if conf.auto_scaling is None and conf.replicas is None:
            fields["autoscaling"] = base.autoscaling
        backends = config.backends
        if engine_of(backends[backend]) != engine_of(backends[base.backend]):
            raise DeploymentInvalid(
                f"backend `{backend}` runs engine `{engine_of(backends[backend])}`; model "
                f"`{model_id}` runs on engine `{engine_of(backends[base.backend])}`",
                "configuration.backend",
            )
        if adapter is not None:
            fields["train_from"] = None
            if base.pricing.fine_tuned is not None:
                tuned = base.pricing.fine_tuned
                fields["pricing"] = Pricing(
                    prompt=tuned.prompt, completion=tuned.completion, training=base.pricing.training
                )
        model = msgspec.structs.replace(base, **fields)
    _check_against_config(loaded, model)
    _check_gpus(loaded, model)
    return model


def _check_against_config(loaded: LoadedConfig, model: ModelConfig) -> None:
    """The checks of radiance.yaml, on the config with this model added."""
    candidate = msgspec.structs.replace(
        loaded.config, models=[*loaded.config.models, model], tiers={}, keys=[]
    )
    where = SourceMap("request", {}, {})
    index = f"$.models[{len(loaded.config.models)}]"
    problems = [
        *check_config(candidate, where, loaded.base_dir),
        *check_engines(candidate, where, loaded.base_dir),
    ]
    for problem in problems:
        if problem.path == index or problem.path.startswith(index + "."):
            field = problem.path.removeprefix(index).lstrip(".") or None
            field = {"backend": "configuration.backend", "replicas": "configuration.replicas"}.get(
                field or "", field
            )
            raise DeploymentInvalid(problem.message, field, problem.hint)


def _check_gpus(loaded: LoadedConfig, model: ModelConfig) -> None:
    backend = loaded.config.backends[model.backend]
    plugin = plugin_of(backend)
    gpus = plugin.gpus(backend)
    if not gpus:
        return
    most = scaling_of(model).most
    if len(gpus) % most:
        raise DeploymentInvalid(
            f"backend `{model.backend}` has {len(gpus)} GPUs, which {most} replicas "
            "cannot share evenly",
            "configuration.replicas",
            f"each {plugin.label} replica gets an equal slice of the backend's gpus",
        )


def gpu_slice(gpus: list[int] | None, slots: int, slot: int) -> tuple[int, ...] | None:
    """The GPUs of replica `slot` when `slots` replicas share `gpus` evenly."""
    if not gpus:
        return None
    width = max(1, len(gpus) // max(1, slots))
    start = (slot * width) % len(gpus)
    return tuple(gpus[start : start + width])
