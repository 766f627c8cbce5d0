"""The demo model's Hugging Face folder computes what its GGUF computes in llama.cpp."""

from __future__ import annotations

import pathlib

import llama_cpp
import numpy as np
import pytest

from backends.llamacpp.demo_model import TINY, write_demo_model
from backends.llamacpp.demo_model_hf import (
    hf_folder_beside,
    permute_rope,
    unpermute_rope,
    write_demo_model_hf,
)

MESSAGES = [{"role": "user", "content": "Write a short poem about tea."}]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, pathlib.Path]:
    folder = tmp_path_factory.mktemp("demo-hf")
    gguf = write_demo_model(folder / "tiny.gguf", TINY)
    return gguf, write_demo_model_hf(hf_folder_beside(gguf), TINY)


def test_the_rope_permutation_is_undone() -> None:
    rows = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    assert np.array_equal(permute_rope(unpermute_rope(rows, 2), 2), rows)
    assert not np.array_equal(unpermute_rope(rows, 2), rows)


def test_the_folder_sits_beside_the_file(demo: tuple[pathlib.Path, pathlib.Path]) -> None:
    gguf, folder = demo
    assert folder == gguf.parent / "tiny-hf"
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names


def test_transformers_decodes_greedily_as_llama_cpp_does(
    demo: tuple[pathlib.Path, pathlib.Path],
) -> None:
    import torch
    import transformers

    gguf, folder = demo
    transformers.logging.disable_progress_bar()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    text = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert tokenizer.eos_token == "<|im_end|>"
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=256, verbose=False)
    try:
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids
        expected = []
        for token in llm.generate(ids, temp=0.0, top_k=1):
            expected.append(token)
            if len(expected) == 12 or token == llm.token_eos():
                break
    finally:
        llm.close()
    out = model.generate(torch.tensor([ids]), max_new_tokens=len(expected), do_sample=False)
    # llama.cpp computes in f16 where transformers uses f32: equal for a dozen tokens here;
    # far longer runs could part at a near-tie.
    assert out[0, len(ids) :].tolist() == expected
