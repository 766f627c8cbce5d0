"""The demo model GGUF, loaded and run by real llama.cpp (llama-cpp-python)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from backends.llamacpp.demo_model import (
    BENCH,
    CHAT_TEMPLATE,
    TINY,
    DemoModelSpec,
    train_tokenizer,
    write_demo_model,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
PROMPTS = [
    "Hello!",
    "What is the weather in Paris?",
    "Write a short poem about tea.",
    "Give me a JSON object describing a user.",
    "Explain, step by step, how to bake bread at home.",
    "2+2?",
]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_model(tmp_path_factory.mktemp("demo") / "tiny.gguf")


@pytest.fixture(scope="module")
def llm(tiny_path: Path) -> Iterator[llama_cpp.Llama]:
    model = llama_cpp.Llama(model_path=str(tiny_path), n_ctx=512, verbose=False)
    yield model
    model.close()


def test_writes_small_deterministic_file_atomically(tmp_path: Path) -> None:
    lines: list[str] = []
    first = write_demo_model(tmp_path / "a" / "b" / "demo.gguf", progress=lines.append)
    assert first == tmp_path / "a" / "b" / "demo.gguf"
    assert 500_000 < first.stat().st_size < 4_000_000
    assert [p.name for p in first.parent.iterdir()] == ["demo.gguf"]  # no temp file left
    assert any("MB" in line for line in lines)
    second = write_demo_model(tmp_path / "again.gguf")
    assert first.read_bytes() == second.read_bytes()
    other = write_demo_model(tmp_path / "other.gguf", DemoModelSpec(seed=1))
    assert other.read_bytes() != first.read_bytes()


def test_bench_spec_is_the_big_never_ending_variant() -> None:
    assert BENCH.vocab_pad_to == 32000
    assert BENCH.eos_bias <= 0
    assert BENCH.embedding % BENCH.heads == 0
    assert BENCH.heads % BENCH.kv_heads == 0
    assert TINY.eos_bias > 0


def test_metadata(llm: llama_cpp.Llama) -> None:
    assert llm.metadata["general.architecture"] == "llama"
    assert llm.metadata["general.name"] == "Radiance demo (random weights)"
    assert llm.metadata["tokenizer.chat_template"] == CHAT_TEMPLATE
    assert llm.metadata["llama.context_length"] == str(TINY.context_length)
    assert llm.n_embd() == TINY.embedding


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world! How are you today?",
        '{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2, 3], "ok": true}}',
        "<|im_start|>user\nWhat's 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "  spaces,\ttabs\n\nand ünïcödé 漢字 🙂 too",
        "def add(a: int, b: int) -> int:\n    return a + b\n",
    ],
)
def test_llama_tokenizes_like_the_trained_tokenizer(llm: llama_cpp.Llama, text: str) -> None:
    expected = train_tokenizer().encode(text).ids
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == expected
    assert llm.detokenize(expected, special=True).decode() == text


def test_im_end_is_a_single_eos_and_eog_token(llm: llama_cpp.Llama) -> None:
    (im_end,) = llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
    assert im_end == llm.token_eos()
    assert llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), im_end)
    for word in (b"{", b"}", b'"', b":", b",", b"[", b"]", b" true", b" false", b"7"):
        assert len(llm.tokenize(word, add_bos=False, special=False)) == 1


def test_greedy_answers_end_on_their_own(llm: llama_cpp.Llama) -> None:
    lengths = []
    for prompt in PROMPTS:
        out = llm.create_chat_completion(
            [{"role": "user", "content": prompt}], max_tokens=200, temperature=0.0
        )
        choice = out["choices"][0]  # type: ignore[index]
        if choice["finish_reason"] == "stop":
            lengths.append(out["usage"]["completion_tokens"])  # type: ignore[index]
    assert len(lengths) >= len(PROMPTS) - 1, lengths
    assert sorted(lengths)[len(lengths) // 2] >= 5, lengths  # not all trivially short


def test_sampled_answers_end_on_their_own(llm: llama_cpp.Llama) -> None:
    finishes = [
        llm.create_chat_completion(
            [{"role": "user", "content": prompt}], max_tokens=200, temperature=1.0, seed=seed
        )["choices"][0]["finish_reason"]  # type: ignore[index]
        for seed, prompt in enumerate(PROMPTS)
    ]
    assert finishes.count("stop") >= len(PROMPTS) - 1, finishes


def test_rejects_impossible_shapes() -> None:
    with pytest.raises(ValueError, match="heads"):
        DemoModelSpec(embedding=100, heads=3)
    with pytest.raises(ValueError, match="kv_heads"):
        DemoModelSpec(heads=4, kv_heads=3)
    with pytest.raises(ValueError, match="positive"):
        DemoModelSpec(heads=0)


def test_chat_template_renders_tools_calls_and_responses(llm: llama_cpp.Llama) -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 18}'},
    ]
    formatter = Jinja2ChatFormatter(
        llm.metadata["tokenizer.chat_template"], eos_token="<|im_end|>", bos_token="<|endoftext|>"
    )
    prompt = formatter(messages=messages, tools=TOOLS).prompt  # type: ignore[arg-type]
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.")
    assert "<tools>\n" + json.dumps(TOOLS[0]) + "\n</tools>" in prompt
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": '
        '{"city": "Paris"}}\n</tool_call><|im_end|>\n'
    ) in prompt
    assert (
        '<|im_start|>user\n<tool_response>\n{"temperature": 18}\n</tool_response><|im_end|>\n'
    ) in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    plain = formatter(messages=[{"role": "user", "content": "Hi"}]).prompt
    assert plain == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    out = llm.create_chat_completion(messages, tools=TOOLS, max_tokens=8)  # type: ignore[arg-type]
    assert out["usage"]["prompt_tokens"] > 150  # type: ignore[index]


def test_padding_and_disabled_eos(tmp_path: Path) -> None:
    spec = DemoModelSpec(vocab_pad_to=4096, eos_bias=0.0)
    path = write_demo_model(tmp_path / "padded.gguf", spec)
    model = llama_cpp.Llama(model_path=str(path), n_ctx=512, verbose=False)
    try:
        assert model.n_vocab() == 4096
        real_vocab = len(train_tokenizer().get_vocab())
        prompt = model.tokenize(
            b"<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", special=True
        )
        for seed in (0, 1):
            model.set_seed(seed)
            tokens = []
            for token in model.generate(prompt, temp=1.0, top_k=0, top_p=1.0, min_p=0.0):
                tokens.append(token)
                if len(tokens) == 150:
                    break
            specials = set(model.tokenize(b"<|endoftext|><|im_start|><|im_end|>", special=True))
            assert not specials & set(tokens)  # never ends, never opens a turn
            assert max(tokens) < real_vocab  # no padding token sampled
            text = model.detokenize(tokens).decode()
            assert all(c.isprintable() or c in "\n\t" for c in text), text
    finally:
        model.close()
