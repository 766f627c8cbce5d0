"""radiance.yaml with vllm and openai backends: the fields each engine reads, located errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_config import errors, load

from appliance.config import LoadedConfig, ModelConfig
from backends.openai.plugin import OpenAIBackend
from backends.vllm.engine import VllmEngine
from backends.vllm.plugin import VllmBackend


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config folder with a fake GGUF, a model folder and a separate python."""
    (tmp_path / "models" / "llama").mkdir(parents=True)
    (tmp_path / "models" / "llama" / "config.json").write_text("{}")
    (tmp_path / "models" / "tiny.gguf").write_bytes(b"GGUF" + bytes(28))
    (tmp_path / "vllm" / "bin").mkdir(parents=True)
    (tmp_path / "vllm" / "bin" / "python").symlink_to("/bin/true")
    monkeypatch.chdir(tmp_path)
    return tmp_path


CONFIG = """\
backends:
  h100:
    engine: vllm
    python: vllm/bin/python
    gpus: [0, 1]
    args: {gpu_memory_utilization: 0.9, enforce_eager: true, tensor_parallel_size: 2}
  edge:
    engine: openai
    urls: [http://10.0.0.5:8000/v1, "http://10.0.0.6:8000/v1"]
    api_key: edge-key
  cpu:
    engine: llamacpp
models:
  - id: llama
    backend: h100
    source: meta-llama/Llama-3.3-70B-Instruct
    context_length: 131072
    tool_parser: llama3_json
  - id: local
    backend: h100
    source: models/llama
  - id: qwen
    backend: edge
    upstream_model: Qwen2.5-72B-Instruct
  - id: tiny
    backend: cpu
    source: models/tiny.gguf
"""


def edit(old: str, new: str, text: str = CONFIG) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def vllm_model(loaded: LoadedConfig, model: ModelConfig) -> str:
    """What vLLM's `--model` gets for a model: a local folder made absolute, or a hub id."""
    from appliance.registry import build_engine

    engine = build_engine(loaded, model)
    assert isinstance(engine, VllmEngine)
    return engine.settings.model


def test_vllm_and_openai_backends_load(home: Path) -> None:
    loaded = load(home, CONFIG, {})
    h100 = loaded.config.backends["h100"]
    edge = loaded.config.backends["edge"]
    assert isinstance(h100, VllmBackend)
    assert h100.gpus == [0, 1]
    assert h100.args["tensor_parallel_size"] == 2
    assert isinstance(edge, OpenAIBackend)
    assert edge.urls == ["http://10.0.0.5:8000/v1", "http://10.0.0.6:8000/v1"]
    models = {m.id: m for m in loaded.config.models}
    assert vllm_model(loaded, models["llama"]) == "meta-llama/Llama-3.3-70B-Instruct"
    assert vllm_model(loaded, models["local"]) == str(home / "models" / "llama")
    assert models["qwen"].source is None
    assert models["qwen"].upstream_model == "Qwen2.5-72B-Instruct"


def test_unknown_field_of_a_vllm_backend_suggests_the_nearest(home: Path) -> None:
    assert errors(home, edit("gpus: [0, 1]", "gpu: [0, 1]"), {}) == [
        "radiance.yaml:5:5: $.backends.h100.gpu: unknown field `gpu` (did you mean `gpus`?)"
    ]


def test_openai_backend_needs_urls(home: Path) -> None:
    text = edit('    urls: [http://10.0.0.5:8000/v1, "http://10.0.0.6:8000/v1"]\n', "")
    assert errors(home, text, {}) == [
        "radiance.yaml:8:5: $.backends.edge: Object missing required field `urls`"
    ]


def test_openai_url_must_be_http(home: Path) -> None:
    [line] = errors(home, edit("http://10.0.0.5:8000/v1,", "10.0.0.5:8000,"), {})
    assert line.startswith("radiance.yaml:9:12: $.backends.edge.urls[0]: Expected `str` matching")


def test_engine_tag_suggests_among_all_engines(home: Path) -> None:
    assert errors(home, edit("engine: vllm", "engine: vlm"), {}) == [
        "radiance.yaml:3:13: $.backends.h100.engine: unknown engine `vlm` (did you mean `vllm`?)"
    ]


def test_openai_models_take_no_source(home: Path) -> None:
    text = edit("    upstream_model:", "    source: models/llama\n    upstream_model:")
    assert errors(home, text, {}) == [
        (
            "radiance.yaml:24:5: $.models[2].source: `source` is not used by engine `openai`:"
            " the replicas load the model (name the replicas' model with `upstream_model`"
            " if it differs from the id)"
        )
    ]


def test_fields_of_another_engine_are_errors(home: Path) -> None:
    text = edit("    upstream_model: Qwen2.5-72B-Instruct\n", "    tool_parser: hermes\n")
    text = edit("    tool_parser: llama3_json\n", "    upstream_model: y\n", text)
    assert errors(home, text, {}) == [
        (
            "radiance.yaml:18:5: $.models[0].upstream_model: `upstream_model` is only used by"
            " engine `openai` (backend `h100` has engine `vllm`)"
        ),
        (
            "radiance.yaml:24:5: $.models[2].tool_parser: `tool_parser` is only used by engine"
            " `llamacpp` and `vllm` (backend `edge` has engine `openai`)"
        ),
    ]


def test_a_llamacpp_tool_parser_names_a_known_format(home: Path) -> None:
    ok = edit(
        "    source: models/tiny.gguf\n", "    source: models/tiny.gguf\n    tool_parser: mistral\n"
    )
    assert load(home, ok, {}).config.models[3].tool_parser == "mistral"
    text = edit(
        "    source: models/tiny.gguf\n", "    source: models/tiny.gguf\n    tool_parser: x\n"
    )
    (problem,) = errors(home, text, {})
    assert problem.startswith(
        "radiance.yaml:28:18: $.models[3].tool_parser: unknown tool_parser `x`"
    )
    assert "llama3_json" in problem and "hermes" in problem


def test_vllm_source_must_be_a_model_folder_or_a_hub_id(home: Path) -> None:
    (home / "models" / "empty").mkdir()
    text = edit("source: models/llama", "source: models/empty")
    text = edit("source: meta-llama/Llama-3.3-70B-Instruct", "source: not a hub id", text)
    text += "  - id: gone\n    backend: h100\n    source: ./models/gone\n"
    text += "  - id: file\n    backend: h100\n    source: models/tiny.gguf\n"
    assert errors(home, text, {}) == [
        (
            "radiance.yaml:16:13: $.models[0].source: source `not a hub id` is neither a folder"
            " nor a hub id (a hub id looks like `meta-llama/Llama-3.3-70B-Instruct`)"
        ),
        (
            f"radiance.yaml:21:13: $.models[1].source: source `{home}/models/empty` has no"
            " config.json (vLLM loads a Hugging Face model folder)"
        ),
        (
            f"radiance.yaml:30:13: $.models[4].source: source `{home}/models/gone` does not"
            " exist (vLLM loads a Hugging Face model folder or a hub id like `org/name`)"
        ),
        (
            f"radiance.yaml:33:13: $.models[5].source: source `{home}/models/tiny.gguf` is not"
            " a folder (vLLM loads a Hugging Face model folder or a hub id like `org/name`)"
        ),
    ]


def test_vllm_python_must_exist_and_not_be_radiances_own(home: Path) -> None:
    text = edit("python: vllm/bin/python", "python: /opt/none/bin/python")
    assert errors(home, text, {}) == [
        (
            "radiance.yaml:4:13: $.backends.h100.python: python `/opt/none/bin/python` does not"
            " exist (make a venv with vllm: python3 -m venv /opt/vllm &&"
            " /opt/vllm/bin/pip install vllm)"
        )
    ]
    text = edit("python: vllm/bin/python", f"python: {sys.executable}")
    [line] = errors(home, text, {})
    assert line.startswith("radiance.yaml:4:13: $.backends.h100.python: `")
    assert line.endswith(
        "` is Radiance's own interpreter (make a separate venv with vllm and name its python)"
    )


def test_missing_source_of_a_vllm_model(home: Path) -> None:
    text = edit("    source: models/llama\n", "")
    assert errors(home, text, {}) == [
        "radiance.yaml:19:5: $.models[1]: missing required field `source`"
        " (a hub id or a local model folder for engine `vllm`)"
    ]


def test_vllm_args_take_scalars_lists_and_mappings(home: Path) -> None:
    args = "{max_num_seqs: 8, structured_outputs_config: {backend: xgrammar}, x: [1, a]}"
    text = edit(
        "args: {gpu_memory_utilization: 0.9, enforce_eager: true, tensor_parallel_size: 2}",
        f"args: {args}",
    )
    backend = load(home, text, {}).config.backends["h100"]
    assert isinstance(backend, VllmBackend)
    assert backend.args["structured_outputs_config"] == {"backend": "xgrammar"}
    assert errors(home, text.replace("x: [1, a]", "x: [[1]]"), {}) == [
        "radiance.yaml:6:81: $.backends.h100.args.x[0]: Expected `int | float | str`, got `array`"
    ]


def test_replicas_and_autoscaling_are_declared_per_model(home: Path) -> None:
    text = edit(
        "    source: models/tiny.gguf\n",
        "    source: models/tiny.gguf\n    replicas: 2\n"
        "    autoscaling: {max_replicas: 4, cooldown_seconds: 10}\n",
    )
    tiny = next(m for m in load(home, text, {}).config.models if m.id == "tiny")
    assert tiny.replicas == 2
    assert tiny.autoscaling is not None
    assert (tiny.autoscaling.min_replicas, tiny.autoscaling.max_replicas) == (1, 4)
    assert tiny.autoscaling.target_queue == 2


def test_replica_settings_an_engine_cannot_use_are_errors(home: Path) -> None:
    upstream = edit(
        "    upstream_model: Qwen2.5-72B-Instruct\n",
        "    upstream_model: Qwen2.5-72B-Instruct\n    replicas: 2\n",
    )
    assert errors(home, upstream, {}) == [
        "radiance.yaml:25:5: $.models[2].replicas: `replicas` is not used by engine `openai` "
        "(its replicas are the backend's `urls`; list more there)"
    ]
    uneven = edit(
        "    tool_parser: llama3_json\n", "    tool_parser: llama3_json\n    replicas: 3\n"
    )
    assert errors(home, uneven, {}) == [
        "radiance.yaml:19:15: $.models[0].replicas: 3 replicas cannot share the 2 GPUs of `h100` "
        "(each vLLM replica gets an equal slice of the backend's gpus)"
    ]
    bounds = edit(
        "    source: models/tiny.gguf\n",
        "    source: models/tiny.gguf\n    autoscaling: {min_replicas: 3, max_replicas: 2}\n",
    )
    [problem] = errors(home, bounds, {})
    assert (
        "$.models[3].autoscaling" in problem and "min_replicas is more than max_replicas" in problem
    )


def test_each_vllm_replica_gets_its_slice_of_the_gpus_and_a_log_of_its_own(home: Path) -> None:
    from appliance.deployments.spec import gpu_slice
    from appliance.registry import build_engine
    from backends.vllm.engine import VllmEngine

    text = edit("    tool_parser: llama3_json\n", "    tool_parser: llama3_json\n    replicas: 2\n")
    loaded = load(home, text, {})
    llama = loaded.config.models[0]
    engines = [
        build_engine(loaded, llama, slot=slot, gpus=gpu_slice([0, 1], 2, slot)) for slot in (0, 1)
    ]
    assert all(isinstance(e, VllmEngine) for e in engines)
    settings = [e.settings for e in engines]  # type: ignore[attr-defined]
    assert [s.gpus for s in settings] == [(0,), (1,)]
    assert [s.log_path.name for s in settings] == ["vllm-llama.log", "vllm-llama-1.log"]
    assert gpu_slice([0, 1, 2, 3], 2, 1) == (2, 3) and gpu_slice(None, 2, 1) is None


def peft_folder(home: Path, rank: object = 16) -> Path:
    folder = home / "adapters" / "support"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(f'{{"peft_type": "LORA", "r": {rank}}}')
    (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder


def test_a_vllm_adapter_is_a_peft_folder_taken_from_the_config_folder(home: Path) -> None:
    folder = peft_folder(home)
    text = CONFIG + "  - id: local-support\n    backend: h100\n    source: models/llama\n"
    loaded = load(home, text + "    adapter: adapters/support\n", {})
    from appliance.registry import build_engine

    engine = build_engine(loaded, loaded.config.models[4])
    assert isinstance(engine, VllmEngine)
    assert engine.settings.adapter == str(folder)
    assert engine.settings.model == str(home / "models" / "llama")
    (folder / "adapter_config.json").unlink()
    assert errors(home, text + "    adapter: adapters/support\n", {}) == [
        (
            f"radiance.yaml:31:14: $.models[4].adapter: adapter `{folder}` has no"
            " adapter_config.json (vLLM loads a PEFT LoRA folder: adapter_config.json and"
            " the weights)"
        )
    ]
    assert errors(home, text + "    adapter: adapters/none\n", {})[0].startswith(
        f"radiance.yaml:31:14: $.models[4].adapter: adapter `{home}/adapters/none` does not exist"
    )


def test_an_adapter_rank_vllm_cannot_serve_is_an_error(home: Path) -> None:
    peft_folder(home, rank=1024)
    text = CONFIG + "  - id: s\n    backend: h100\n    source: models/llama\n"
    [line] = errors(home, text + "    adapter: adapters/support\n", {})
    assert "LoRA rank 1024 is above 512, the most vLLM serves" in line


def test_an_openai_model_takes_no_adapter(home: Path) -> None:
    peft_folder(home)
    text = edit(
        "    upstream_model: Qwen2.5-72B-Instruct\n",
        "    upstream_model: Qwen2.5-72B-Instruct\n    adapter: adapters/support\n",
    )
    assert errors(home, text, {}) == [
        (
            "radiance.yaml:25:5: $.models[2].adapter: `adapter` is only used by engine"
            " `llamacpp` and `vllm` (backend `edge` has engine `openai`)"
        )
    ]
