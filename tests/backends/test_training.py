"""The trainer subprocess end to end on the tiny demo model: events, resume, SIGTERM, and
its adapter served by the llama.cpp engine as transformers + peft run it."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from peft_reference import peft_greedy as reference_greedy

from backends.base import SamplingParams
from backends.llamacpp.demo_model import TINY, write_demo_model
from backends.llamacpp.demo_model_hf import write_demo_model_hf
from backends.llamacpp.engine import LlamaCppEngine, LlamaCppSettings
from backends.training.spec import TrainingSpec

ROOT = pathlib.Path(__file__).resolve().parents[2]
QUESTIONS = [
    "Hello!",
    "What is the weather in Paris?",
    "Write a short poem about tea.",
    "2+2?",
    "Who are you?",
    "Name a color.",
    "Say something nice.",
    "What time is it?",
    "Tell me a joke.",
    "How are you?",
]
ANSWER = "Radiance is ready."
PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "The sea?"}]


def example(question: str) -> str:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": ANSWER},
    ]
    return json.dumps({"messages": messages})


@dataclass
class Demo:
    folder: pathlib.Path
    gguf: pathlib.Path
    hf: pathlib.Path
    train: pathlib.Path
    valid: pathlib.Path

    def spec(self, output: pathlib.Path, **fields: Any) -> pathlib.Path:
        defaults: dict[str, Any] = {
            "base": str(self.hf),
            "gguf_base": str(self.gguf),
            "training_file": str(self.train),
            "validation_file": str(self.valid),
            "output_dir": str(output),
            "n_epochs": 3,
            "batch_size": 2,
            "seed": 7,
            "threads": 2,
        }
        spec = TrainingSpec(**(defaults | fields))
        path = output.with_suffix(".spec.json")
        path.write_bytes(msgspec.json.encode(spec))
        return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    folder = tmp_path_factory.mktemp("training")
    train, valid = folder / "train.jsonl", folder / "valid.jsonl"
    train.write_text("".join(example(q) + "\n" for q in QUESTIONS))
    valid.write_text(example("Any news?") + "\n" + example("Ready?") + "\n")
    return Demo(
        folder,
        write_demo_model(folder / "tiny.gguf", TINY),
        write_demo_model_hf(folder / "tiny-hf", TINY),
        train,
        valid,
    )


def trainer(spec: pathlib.Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "backends.training.trainer", str(spec)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def events_until(process: subprocess.Popen[str], kind: str | None = None) -> Iterator[Any]:
    """Events as they come, up to and including the first of ``kind``."""
    assert process.stdout is not None
    for line in process.stdout:
        event = json.loads(line)
        yield event
        if event["event"] == kind:
            return


def run(spec: pathlib.Path) -> tuple[int, list[Any], str]:
    with trainer(spec) as process:
        out, err = process.communicate(timeout=120)
    return process.returncode, [json.loads(line) for line in out.splitlines()], err


@pytest.fixture(scope="module")
def trained(demo: Demo) -> tuple[pathlib.Path, list[Any]]:
    output = demo.folder / "job"
    code, events, stderr = run(demo.spec(output))
    assert code == 0, stderr
    return output, events


def test_training_prints_its_events_and_writes_both_adapters(
    trained: tuple[pathlib.Path, list[Any]],
) -> None:
    output, events = trained
    validated, *rest = events
    assert validated["event"] == "validated"
    assert validated["examples"] == 10
    assert validated["hyperparameters"] == {
        "n_epochs": 3,
        "batch_size": 2,
        "learning_rate_multiplier": 2.0,  # "auto"
    }
    assert validated["total_steps"] == 15
    steps = [e for e in rest if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 16))
    assert [e["epoch"] for e in steps] == [1] * 5 + [2] * 5 + [3] * 5
    assert steps[-1]["trained_tokens"] == 3 * validated["tokens"]
    assert steps[-1]["train_loss"] < steps[0]["train_loss"]
    checkpoints = [e for e in rest if e["event"] == "checkpoint"]
    assert [e["step"] for e in checkpoints] == [5, 10, 15]
    for checkpoint in checkpoints:
        metrics = checkpoint["metrics"]
        assert metrics["valid_loss"] > 0 and metrics["full_valid_loss"] > 0
        assert {"adapter_model.safetensors", "trainer_state.pt"} <= {
            p.name for p in pathlib.Path(checkpoint["path"]).iterdir()
        }
    done = rest[-1]
    assert done == {
        "event": "succeeded",
        "adapter": str(output / "adapter"),
        "gguf": str(output / "adapter.gguf"),
        "trained_tokens": steps[-1]["trained_tokens"],
    }
    assert (output / "adapter.gguf").read_bytes()[:4] == b"GGUF"


async def greedy(demo: Demo, adapter: pathlib.Path | None) -> str:
    engine = LlamaCppEngine(LlamaCppSettings("tiny", demo.gguf, 512, parallel=1, adapter=adapter))
    await engine.start()
    try:
        prompt = engine.render_chat(PROMPT, None)
        params = SamplingParams(max_tokens=8, temperature=0.0)
        return "".join([d.text async for d in engine.generate(prompt, params)])
    finally:
        await engine.stop()


def peft_greedy(demo: Demo, adapter: pathlib.Path) -> str:
    return reference_greedy(demo.hf, adapter, PROMPT, 8)


async def test_the_engine_serves_the_fine_tune_as_transformers_and_peft_do(
    demo: Demo, trained: tuple[pathlib.Path, list[Any]]
) -> None:
    output, _events = trained
    base = await greedy(demo, None)
    tuned = await greedy(demo, output / "adapter.gguf")
    assert tuned != base
    # The same weights in f32 (transformers) and f16 (llama.cpp): the first eight greedy
    # tokens agree; longer runs may part at a near-tie from llama.cpp's f16 rounding.
    assert tuned == peft_greedy(demo, output / "adapter")


async def test_a_file_that_is_no_lora_is_a_clear_engine_error(demo: Demo) -> None:
    from backends.base import EngineError

    with pytest.raises(EngineError, match="is not a LoRA for this model"):
        await greedy(demo, demo.gguf)  # a model, not an adapter
    with pytest.raises(EngineError, match="does not exist"):
        await greedy(demo, demo.folder / "missing.gguf")


def test_a_restarted_run_resumes_from_its_last_checkpoint(
    demo: Demo, trained: tuple[pathlib.Path, list[Any]]
) -> None:
    output = demo.folder / "resumed"
    spec = demo.spec(output)
    with trainer(spec) as first:
        seen = list(events_until(first, "checkpoint"))
        first.kill()
    assert seen[-1]["step"] == 5
    code, events, stderr = run(spec)
    assert code == 0, stderr
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == list(range(6, 16))  # continues after the checkpoint
    assert events[-1]["trained_tokens"] == trained[1][-1]["trained_tokens"]
    # Same seed, same data order, same optimizer state: the same adapter as one run.
    whole = (trained[0] / "adapter" / "adapter_model.safetensors").read_bytes()
    assert (output / "adapter" / "adapter_model.safetensors").read_bytes() == whole


def test_sigterm_ends_a_run_at_once_without_a_traceback(demo: Demo) -> None:
    with trainer(demo.spec(demo.folder / "cancelled", n_epochs=20, batch_size=1)) as process:
        assert [e["event"] for e in events_until(process, "step")][-1] == "step"
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=5)
        assert time.monotonic() - sent < 2
        assert code == 143
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()


def test_validate_only_names_the_line_too_long_for_the_context(demo: Demo) -> None:
    long = demo.folder / "long.jsonl"
    long.write_text(example("Hi") + "\n\n" + example("word " * 200) + "\n")
    spec = demo.spec(
        demo.folder / "check",
        training_file=str(long),
        validation_file=None,
        context_length=128,
        validate_only=True,
    )
    code, events, _stderr = run(spec)
    assert code == 3
    ((error,),) = [e["errors"] for e in events if e["event"] == "invalid"]
    assert error["file"] == "training_file"
    assert error["line"] == 3 and error["param"] == "messages"
    assert "more than the model's context of 128" in error["message"]
    long.write_text(example("Hi") + "\n")
    code, events, _stderr = run(spec)
    assert code == 0
    assert [e["event"] for e in events] == ["validated"]
    assert not (demo.folder / "check").exists()


def test_the_llamacpp_plugin_checks_the_adapter_file(
    demo: Demo, trained: tuple[pathlib.Path, list[Any]]
) -> None:
    from backends.llamacpp.plugin import LlamaCppPlugin

    plugin = LlamaCppPlugin()

    def messages(adapter: str) -> list[str]:
        return [issue.message for issue in plugin.check_adapter(adapter, demo.folder)]

    assert messages(str(trained[0] / "adapter.gguf")) == []
    assert messages("job/adapter.gguf") == []  # relative to the config's folder
    assert messages("nope.gguf") == [f"adapter `{demo.folder / 'nope.gguf'}` does not exist"]
    assert "is a folder, not a GGUF LoRA file" in messages("job/adapter")[0]
    assert "is not a GGUF file" in messages("train.jsonl")[0]
