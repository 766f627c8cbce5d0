"""The demo model's weights as a Hugging Face ``LlamaForCausalLM`` folder.

Fine-tuning trains on Hugging Face weights (``train_from``) and llama.cpp serves the GGUF;
both must compute the same function. The folder holds exactly the GGUF's values (the
float16 matrices widened to float32), the same ``tokenizers`` vocabulary and the same
chat template. Written with numpy and JSON only: no torch or transformers needed.

llama.cpp keeps a llama's attn_q/attn_k rows in its own rotary layout: Hugging Face's
``convert_hf_to_gguf.py`` permutes them (``LlamaModel.permute``) on the way in, so the
folder gets the inverse permutation.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from backends.llamacpp.demo_model import (
    CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    TINY,
    Array,
    DemoModelSpec,
    demo_weights,
)

# GGUF tensor name stems (in blk.N.) and their Hugging Face names (in model.layers.N.).
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def unpermute_rope(weights: Array, heads: int) -> Array:
    """The inverse of convert_hf_to_gguf's ``LlamaModel.permute``: llama.cpp's rows of a
    q or k projection back in Hugging Face's (rotate-half) order."""
    rows = weights.shape[0]
    half = rows // heads // 2
    return weights.reshape(heads, half, 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def permute_rope(weights: Array, heads: int) -> Array:
    """convert_hf_to_gguf's ``LlamaModel.permute``: Hugging Face rows in llama.cpp's order."""
    rows = weights.shape[0]
    half = rows // heads // 2
    return weights.reshape(heads, 2, half, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


F32 = npt.NDArray[np.float32]


def hf_tensors(spec: DemoModelSpec, weights: dict[str, Array]) -> dict[str, F32]:
    """The GGUF-named weights under Hugging Face names, float32, q/k rows unpermuted."""
    out: dict[str, F32] = {}
    for name, array in weights.items():
        if name.startswith("blk."):
            _, layer, stem = name.split(".", 2)
            hf_name = f"model.layers.{layer}.{_LAYER_NAMES[stem]}"
            if stem == "attn_q.weight":
                array = unpermute_rope(array, spec.heads)
            elif stem == "attn_k.weight":
                array = unpermute_rope(array, spec.kv_heads)
        else:
            hf_name = _GLOBAL_NAMES[name]
        out[hf_name] = np.ascontiguousarray(array, dtype=np.float32)
    return out


def write_safetensors(path: Path, tensors: dict[str, F32]) -> None:
    """The safetensors format: a little-endian u64 header length, a JSON header, the data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, array in tensors.items():
        size = array.nbytes
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(raw)))
        handle.write(raw)
        for array in tensors.values():
            handle.write(array.astype("<f4", copy=False).tobytes())


def _config(spec: DemoModelSpec, tokens: list[str]) -> dict[str, object]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": len(tokens),
        "hidden_size": spec.embedding,
        "intermediate_size": spec.ffn,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "head_dim": spec.embedding // spec.heads,
        "hidden_act": "silu",
        "max_position_embeddings": spec.context_length,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": tokens.index(spec.bos),
        "eos_token_id": tokens.index(spec.eos),
        "pad_token_id": tokens.index(SPECIAL_TOKENS[0]),
        "torch_dtype": "float32",
    }


def _tokenizer_config(spec: DemoModelSpec, tokens: list[str]) -> dict[str, object]:
    special = [t for t in tokens if t in {*SPECIAL_TOKENS, *spec.special_tokens}]
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": spec.bos,
        "eos_token": spec.eos,
        "pad_token": SPECIAL_TOKENS[0],
        "unk_token": None,
        "add_bos_token": spec.add_bos,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": spec.context_length,
        "added_tokens_decoder": {
            str(tokens.index(t)): {
                "content": t,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "single_word": False,
                "special": t not in spec.user_defined,
            }
            for t in special
        },
        "chat_template": spec.chat_template or CHAT_TEMPLATE,
    }


def write_demo_model_hf(
    folder: Path,
    spec: DemoModelSpec = TINY,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the demo model as a Hugging Face folder (replaced whole, atomically)."""
    say = progress or (lambda _line: None)
    folder = Path(folder)
    say("training tokenizer")
    tokenizer, tokens, _types, _merges, weights = demo_weights(spec)
    if spec.vocab_pad_to > tokenizer.get_vocab_size(with_added_tokens=True):
        say("note: padding tokens exist in the GGUF only (never produced by the tokenizer)")
    tensors = hf_tensors(spec, weights)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.tmp")
    tmp.mkdir()
    try:
        say(f"writing {sum(a.nbytes for a in tensors.values()) / 1e6:.1f} MB to {folder.name}/")
        write_safetensors(tmp / "model.safetensors", tensors)
        files = {
            "config.json": _config(spec, tokens),
            "generation_config.json": {
                "bos_token_id": tokens.index(spec.bos),
                "eos_token_id": tokens.index(spec.eos),
                "pad_token_id": tokens.index(SPECIAL_TOKENS[0]),
            },
            "tokenizer_config.json": _tokenizer_config(spec, tokens),
            "special_tokens_map.json": {
                "bos_token": spec.bos,
                "eos_token": spec.eos,
                "pad_token": SPECIAL_TOKENS[0],
            },
        }
        for name, content in files.items():
            (tmp / name).write_text(json.dumps(content, indent=2) + "\n")
        (tmp / "tokenizer.json").write_text(tokenizer.to_str())
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"wrote {folder}")
    return folder


def hf_folder_beside(gguf_path: Path) -> Path:
    """Where `radiance demo-model` puts the folder: ``models/tiny.gguf`` -> ``models/tiny-hf``."""
    return gguf_path.with_name(f"{gguf_path.stem}-hf")
