"""Planning a deployment from a request: radiance.yaml's rules, named fields (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import LoadedConfig, parse_config_text
from appliance.deployments.spec import (
    Configuration,
    DeploymentInvalid,
    PricingBody,
    merge,
    plan_model,
    scaling_of,
)


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedConfig:
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF" + bytes(28))
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    (tmp_path / "vllm" / "bin").mkdir(parents=True)
    (tmp_path / "vllm" / "bin" / "python").symlink_to("/bin/true")
    text = """
backends:
  cpu: {engine: llamacpp}
  small: {engine: llamacpp, parallel: 1}
  gpu: {engine: vllm, python: vllm/bin/python, gpus: [0, 1, 2, 3]}
  edge: {engine: openai, urls: ["http://127.0.0.1:9/v1"]}
models:
  - {id: tiny, backend: cpu, source: tiny.gguf, context_length: 512, pricing: {prompt: "1"}}
  - {id: big, backend: gpu, source: hf}
  - {id: remote, backend: edge}
"""
    return parse_config_text(text, "radiance.yaml", tmp_path, {})


def refused(loaded: LoadedConfig, **fields: object) -> DeploymentInvalid:
    options = {"name": "d", "model_id": "tiny", "source": None, "pricing": None}
    options.update(fields)
    conf = options.pop("conf", Configuration())
    with pytest.raises(DeploymentInvalid) as info:
        plan_model(loaded, conf=conf, **options)  # type: ignore[arg-type]
    return info.value


def test_a_deployment_of_a_declared_model_keeps_its_file_and_prices(loaded: LoadedConfig) -> None:
    conf = Configuration(backend="small", replicas=3, context_length=256)
    model = plan_model(loaded, "tiny-small", "tiny", None, None, conf)
    assert (model.id, model.backend, model.replicas, model.context_length) == (
        "tiny-small",
        "small",
        3,
        256,
    )
    assert model.source == "tiny.gguf" and model.pricing.prompt == "1" and model.aliases == []
    auto = plan_model(
        loaded,
        "tiny-auto",
        "tiny",
        None,
        None,
        Configuration(auto_scaling=True, min_replicas=2, max_replicas=4, replicas=9),
    )
    scaling = scaling_of(auto)
    assert (scaling.auto, scaling.min_replicas, scaling.max_replicas, scaling.replicas) == (
        True,
        2,
        4,
        4,
    )


def test_a_new_model_from_a_source_gets_its_own_pricing(loaded: LoadedConfig) -> None:
    model = plan_model(
        loaded,
        "fresh",
        "fresh",
        "hf://acme/tiny/tiny.gguf",
        PricingBody(prompt="0.5", completion="2"),
        Configuration(backend="cpu"),
    )
    assert model.source == "hf://acme/tiny/tiny.gguf" and model.pricing.completion == "2"


def test_what_radiance_yaml_would_refuse_is_refused_naming_the_field(
    loaded: LoadedConfig,
) -> None:
    assert refused(loaded, model_id="nope").field == "modelId"
    assert refused(loaded, conf=Configuration(backend="gpu")).field == "configuration.backend"
    assert refused(loaded, source="other.gguf").field == "source"
    assert refused(loaded, pricing=PricingBody()).field == "pricing"
    missing = refused(
        loaded, model_id="fresh", source="gone.gguf", conf=Configuration(backend="cpu")
    )
    assert missing.field == "source" and "does not exist" in str(missing)
    remote = refused(loaded, model_id="remote", conf=Configuration(replicas=2))
    assert remote.field == "configuration.replicas" and "urls" in (remote.hint or "")
    uneven = refused(loaded, model_id="big", conf=Configuration(replicas=3))
    assert uneven.field == "configuration.replicas" and "4 GPUs" in str(uneven)
    assert plan_model(loaded, "b2", "big", None, None, Configuration(replicas=2)).replicas == 2


def test_a_change_merges_over_what_was_asked() -> None:
    old = Configuration(backend="cpu", replicas=2, context_length=512)
    new = merge(old, Configuration(replicas=3))
    assert (new.backend, new.replicas, new.context_length) == ("cpu", 3, 512)
