"""Which models can be fine-tuned, and where their Hugging Face weights are.

A model of radiance.yaml trains from `train_from:` (a folder of Hugging Face weights, or an
hf://OWNER/REPO[@REVISION] source fetched into the models folder); a vLLM model trains
from its own source when it has no `train_from`. A llama.cpp model's adapter is also
written as a GGUF LoRA for its GGUF file; a vLLM model loads the PEFT folder itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.config import LoadedConfig, ModelConfig
from appliance.errors import InvalidRequest
from appliance.hub.repository import cached_repo, download_repo_async
from appliance.hub.source import HubRepo, is_hub_source
from backends.engines import engine_of
from backends.plugin import resolve_path

TRAINABLE_ENGINES = ("llamacpp", "vllm")


@dataclass(frozen=True)
class TrainingBase:
    model: ModelConfig
    engine: str  # the `engine:` of its backend
    weights: str  # train_from, or a vLLM model's source


def training_base(loaded: LoadedConfig, model_id: str) -> TrainingBase:
    """The declared model `model_id` (an id, not an alias) as a fine-tuning base."""
    config = loaded.config
    model = next((m for m in config.models if m.id == model_id), None)
    if model is None:
        raise InvalidRequest(
            f"Model `{model_id[:128]}` cannot be fine-tuned: only the models of radiance.yaml "
            "can be.",
            param="model",
            code="model_not_available",
        )
    engine = engine_of(config.backends[model.backend])
    weights = model.train_from or (model.source if engine == "vllm" else None)
    if engine not in TRAINABLE_ENGINES or weights is None or model.adapter is not None:
        reason = (
            "it already runs a LoRA adapter"
            if model.adapter is not None
            else "it declares no `train_from:` (the folder of its Hugging Face weights)"
            if engine in TRAINABLE_ENGINES
            else f"its engine `{engine}` serves it from elsewhere"
        )
        raise InvalidRequest(
            f"Model `{model_id}` cannot be fine-tuned here: {reason}.",
            param="model",
            code="model_not_available",
        )
    return TrainingBase(model, engine, weights)


async def local_weights(loaded: LoadedConfig, base: TrainingBase) -> Path:
    """The folder of the base's Hugging Face weights, downloaded first if on the hub."""
    weights = base.weights
    repo = HubRepo.parse(weights) if is_hub_source(weights) or base.engine == "vllm" else None
    local = resolve_path(loaded.base_dir, weights)
    if repo is None or (not is_hub_source(weights) and local.is_dir()):
        return local
    found = cached_repo(repo, loaded.models_dir)
    if found is not None:
        return found
    return await download_repo_async(repo, loaded.models_dir)


def gguf_file(loaded: LoadedConfig, base: TrainingBase, downloaded: Path | None) -> Path | None:
    """A llama.cpp base's GGUF file (its download when its source is on the hub)."""
    if base.engine != "llamacpp" or base.model.source is None:
        return None
    if downloaded is not None:
        return downloaded
    return resolve_path(loaded.base_dir, base.model.source)
