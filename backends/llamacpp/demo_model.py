"""Write a small random-weight llama GGUF that real llama.cpp loads and runs.

The model talks gibberish, but it is a genuine llama-architecture file with a byte-level
BPE tokenizer, a ChatML chat template with tool support, and a "bias channel" that makes
it end its answers with ``<|im_end|>`` on its own at a tunable rate.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from backends.llamacpp.demo_corpus import CORPUS

Array = npt.NDArray[np.float16] | npt.NDArray[np.float32]

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
BOS, IM_START, IM_END = SPECIAL_TOKENS

CHAT_TEMPLATE = """\
{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages and messages[0]['role'] == 'system' %}
{{- messages[0]['content'] or '' }}
{%- else %}
{{- 'You are a helpful assistant.' }}
{%- endif %}
{{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' }}
{{- 'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}
{%- for tool in tools %}
{{- '\\n' }}{{- tool | tojson }}
{%- endfor %}
{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and ' }}
{{- 'arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n' }}
{{- '{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}
{%- elif messages and messages[0]['role'] == 'system' %}
{{- '<|im_start|>system\\n' + (messages[0]['content'] or '') + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message['role'] == 'user' or (message['role'] == 'system' and not loop.first) %}
{{- '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>\\n' }}
{%- elif message['role'] == 'assistant' %}
{{- '<|im_start|>assistant' }}
{%- if message['content'] %}
{{- '\\n' + message['content'] }}
{%- endif %}
{%- for tool_call in message['tool_calls'] or [] %}
{%- if tool_call['function'] is defined %}
{%- set tool_call = tool_call['function'] %}
{%- endif %}
{{- '\\n<tool_call>\\n{"name": "' + tool_call['name'] + '", "arguments": ' }}
{%- if tool_call['arguments'] is string %}
{{- tool_call['arguments'] }}
{%- else %}
{{- tool_call['arguments'] | tojson }}
{%- endif %}
{{- '}\\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\\n' }}
{%- elif message['role'] == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}
{{- '<|im_start|>user' }}
{%- endif %}
{{- '\\n<tool_response>\\n' + (message['content'] or '') + '\\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}
{{- '<|im_end|>\\n' }}
{%- endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""


@dataclass(frozen=True)
class DemoModelSpec:
    """Shape of a demo model; the same spec always gives the same file."""

    embedding: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    ffn: int = 384
    context_length: int = 2048
    vocab_pad_to: int = 0  # pad the vocabulary with unused tokens up to this size (0 = none)
    eos_bias: float = 5.25  # how eagerly the model ends its answers; <= 0 means never
    seed: int = 0
    # A model family's shape (tests): its special tokens, BOS, EOS and chat template.
    special_tokens: tuple[str, ...] = ()
    user_defined: tuple[str, ...] = ()  # of special_tokens: added tokens that are not control
    bos: str = BOS
    eos: str = IM_END
    add_bos: bool = False
    chat_template: str | None = None

    def __post_init__(self) -> None:
        if min(self.embedding, self.layers, self.heads, self.kv_heads, self.ffn) < 1:
            raise ValueError("demo model dimensions must be positive")
        if self.embedding % self.heads or self.heads % self.kv_heads:
            raise ValueError("embedding must divide by heads, and heads by kv_heads")


TINY = DemoModelSpec()
BENCH = DemoModelSpec(
    embedding=1024, layers=8, heads=16, kv_heads=8, ffn=2816, vocab_pad_to=32000, eos_bias=0.0
)

# Weight scales, found empirically with llama.cpp; see _weights().
_GAIN = 1.0  # matrices are normal * _GAIN / sqrt(fan_in)
_QK_GAIN = 1.75  # larger makes attention sharper
_EMBED_STD = 1.0
_LOGIT_STD = 2.0  # spread of the random part of the logits
_BIAS_VALUE = 1.0  # the constant in every token embedding's last channel
_SUPPRESS = 30.0  # how hard unprintable, control and padding tokens are kept from being sampled
_EOS_NOISE = 0.5  # scale of the random part of the <|im_end|> logit


def train_tokenizer(extra_special: tuple[str, ...] = ()) -> Tokenizer:
    """Train the byte-level BPE tokenizer on the embedded corpus (deterministic)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        min_frequency=2,
        special_tokens=[*SPECIAL_TOKENS, *(t for t in extra_special if t not in SPECIAL_TOKENS)],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([CORPUS], trainer=trainer)
    return tokenizer


def _vocab(
    tokenizer: Tokenizer,
    pad_to: int,
    extra_special: tuple[str, ...] = (),
    user_defined: tuple[str, ...] = (),
) -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merges for the GGUF, in id order."""
    by_id = {i: t for t, i in tokenizer.get_vocab(with_added_tokens=True).items()}
    tokens = [by_id[i] for i in range(len(by_id))]
    special = {*SPECIAL_TOKENS, *extra_special}
    types = [
        gguf.TokenType.USER_DEFINED
        if t in user_defined
        else gguf.TokenType.CONTROL
        if t in special
        else gguf.TokenType.NORMAL
        for t in tokens
    ]
    for i in range(len(tokens), pad_to):
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    raw_merges = json.loads(tokenizer.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in raw_merges]
    return tokens, [int(t) for t in types], merges


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the character standing for each byte."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    rest = [b for b in range(256) if b not in keep]
    return {chr(b): b for b in keep} | {chr(256 + i): b for i, b in enumerate(rest)}


_BYTE_OF = _byte_alphabet()


def _printable(token: str) -> bool:
    """Whether a byte-level token stands for printable ASCII text (tab and newline allowed)."""
    if token in SPECIAL_TOKENS or token.startswith("[PAD"):
        return False
    return all(c in _BYTE_OF and (32 <= _BYTE_OF[c] < 127 or _BYTE_OF[c] in (9, 10)) for c in token)


def _weights(spec: DemoModelSpec, tokens: list[str]) -> dict[str, Array]:
    """Random llama weights (F16 matrices, F32 norms) plus the bias channel.

    The last embedding channel holds a constant in every token row. No layer reads or
    writes it, so it reaches the output untouched, where the ``<|im_end|>`` row of
    ``output.weight`` reads it with weight ``eos_bias``. Rows of unprintable, control and
    padding tokens read it strongly negatively, so those are never sampled.
    """
    rng = np.random.default_rng(spec.seed)
    d, n_vocab, head_dim = spec.embedding, len(tokens), spec.embedding // spec.heads
    bias = d - 1

    def matrix(rows: int, cols: int, std: float, *, reads: bool, writes: bool) -> Array:
        w = rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(std)
        if reads:  # reads the residual stream, but not the bias channel
            w[:, bias] = 0.0
        if writes:  # writes the residual stream, but not the bias channel
            w[bias] = 0.0
        return w

    def linear(
        rows: int, cols: int, *, reads: bool = True, writes: bool = False, gain: float = _GAIN
    ) -> Array:
        w = matrix(rows, cols, gain / np.sqrt(cols), reads=reads, writes=writes)
        return w.astype(np.float16)

    ones = np.ones(d, dtype=np.float32)
    embed = rng.standard_normal((n_vocab, d), dtype=np.float32) * np.float32(_EMBED_STD)
    embed[:, bias] = _BIAS_VALUE
    weights: dict[str, Array] = {"token_embd.weight": embed.astype(np.float16)}
    for i in range(spec.layers):
        weights |= {
            f"blk.{i}.attn_norm.weight": ones,
            f"blk.{i}.attn_q.weight": linear(d, d, gain=_QK_GAIN),
            f"blk.{i}.attn_k.weight": linear(spec.kv_heads * head_dim, d, gain=_QK_GAIN),
            f"blk.{i}.attn_v.weight": linear(spec.kv_heads * head_dim, d),
            f"blk.{i}.attn_output.weight": linear(d, d, writes=True),
            f"blk.{i}.ffn_norm.weight": ones,
            f"blk.{i}.ffn_gate.weight": linear(spec.ffn, d),
            f"blk.{i}.ffn_up.weight": linear(spec.ffn, d),
            f"blk.{i}.ffn_down.weight": linear(d, spec.ffn, reads=False, writes=True),
        }
    output = matrix(n_vocab, d, _LOGIT_STD / np.sqrt(d), reads=True, writes=False)
    output[[i for i, t in enumerate(tokens) if not _printable(t)], bias] = -_SUPPRESS
    eos = tokens.index(IM_END)
    output[eos] *= _EOS_NOISE
    output[eos, bias] = spec.eos_bias if spec.eos_bias > 0 else -_SUPPRESS
    weights |= {"output_norm.weight": ones, "output.weight": output.astype(np.float16)}
    return weights


def demo_weights(
    spec: DemoModelSpec = TINY,
) -> tuple[Tokenizer, list[str], list[int], list[str], dict[str, Array]]:
    """The tokenizer, tokens, token types, merges and GGUF-named weights of a spec."""
    tokenizer = train_tokenizer(spec.special_tokens)
    tokens, types, merges = _vocab(
        tokenizer, spec.vocab_pad_to, spec.special_tokens, spec.user_defined
    )
    return tokenizer, tokens, types, merges, _weights(spec, tokens)


def write_demo_model(
    path: Path,
    spec: DemoModelSpec = TINY,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the demo model GGUF to ``path`` atomically and return the path."""
    say = progress or (lambda _line: None)
    path = Path(path)
    say("training tokenizer")
    _tokenizer, tokens, types, merges, weights = demo_weights(spec)
    say(f"tokenizer ready: {len(tokens)} tokens, {spec.layers} layers, width {spec.embedding}")

    writer = gguf.GGUFWriter(None, arch="llama")
    writer.add_name("Radiance demo (random weights)")
    writer.add_description("Random-weight llama model for demos and tests; it talks gibberish.")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(spec.context_length)
    writer.add_embedding_length(spec.embedding)
    writer.add_block_count(spec.layers)
    writer.add_feed_forward_length(spec.ffn)
    writer.add_head_count(spec.heads)
    writer.add_head_count_kv(spec.kv_heads)
    writer.add_rope_dimension_count(spec.embedding // spec.heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index(spec.bos))
    writer.add_eos_token_id(tokens.index(spec.eos))
    writer.add_eot_token_id(tokens.index(spec.eos))
    writer.add_pad_token_id(tokens.index(BOS))
    writer.add_add_bos_token(spec.add_bos)
    writer.add_add_eos_token(False)
    writer.add_chat_template(spec.chat_template or CHAT_TEMPLATE)
    for name, array in weights.items():
        writer.add_tensor(name, array)
    size = sum(a.nbytes for a in weights.values())

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    say(f"writing {size / 1e6:.1f} MB to {path.name}")
    try:
        try:
            writer.write_header_to_file(path=tmp)
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    say(f"wrote {path.stat().st_size / 1e6:.1f} MB")
    return path
