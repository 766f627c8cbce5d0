"""A PEFT LoRA adapter as a GGUF LoRA file that llama.cpp loads (llama_adapter_lora_init).

The layout of llama.cpp's ``convert_lora_to_gguf.py``: ``general.type = adapter``,
``adapter.type = lora``, ``adapter.lora.alpha``, the base's architecture, and for each
adapted weight ``blk.N.attn_q.weight.lora_a`` (PEFT's lora_A, rank x in) and ``.lora_b``
(lora_B, out x rank). llama.cpp scales the update by alpha / rank, as PEFT does.

llama.cpp keeps a llama's q/k rows in its own rotary order (convert_hf_to_gguf permutes
them), so lora_b of q_proj and k_proj, whose rows are those outputs, gets the same
permutation. Needs numpy, safetensors' numpy reader and gguf: no torch.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file

# PEFT module names (under model.layers.N.) and llama.cpp's (under blk.N.).
_MODULES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_NAME = re.compile(
    r"^base_model\.model\.model\.layers\.(\d+)\.(.+)\.lora_([AB])(?:\.default)?\.weight$"
)


class AdapterError(ValueError):
    """The adapter cannot be written as a GGUF LoRA (say which tensor and why)."""


def permute_rope(weights: npt.NDArray[np.float32], heads: int) -> npt.NDArray[np.float32]:
    """convert_hf_to_gguf's ``LlamaModel.permute`` of a q/k projection's rows."""
    half = weights.shape[0] // heads // 2
    shape = weights.shape
    return weights.reshape(heads, 2, half, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _architecture(gguf_base: Path) -> str:
    field = gguf.GGUFReader(gguf_base).fields.get("general.architecture")
    if field is None:
        raise AdapterError(f"{gguf_base} has no general.architecture")
    return bytes(field.parts[field.data[0]]).decode()


def write_gguf_lora(adapter: Path, base: Path, gguf_base: Path, out: Path) -> Path:
    """Write ``out`` from the PEFT folder ``adapter`` trained on the Hugging Face folder
    ``base``, for the GGUF ``gguf_base``; returns ``out`` (written atomically)."""
    config = json.loads((adapter / "adapter_config.json").read_text())
    base_config = json.loads((base / "config.json").read_text())
    arch = _architecture(gguf_base)
    if arch != "llama" or base_config.get("model_type") != "llama":
        raise AdapterError(f"only llama models are supported, not {arch}")
    heads = int(base_config["num_attention_heads"])
    kv_heads = int(base_config.get("num_key_value_heads", heads))
    tensors: dict[str, npt.NDArray[np.float32]] = {}
    for name, array in load_file(str(adapter / "adapter_model.safetensors")).items():
        match = _NAME.match(name)
        if match is None or match.group(2) not in _MODULES:
            raise AdapterError(f"tensor {name} has no llama.cpp counterpart")
        layer, module, which = match.groups()
        weights = array.astype(np.float32)
        if which == "B" and module == "self_attn.q_proj":
            weights = permute_rope(weights, heads)
        elif which == "B" and module == "self_attn.k_proj":
            weights = permute_rope(weights, kv_heads)
        tensors[f"blk.{layer}.{_MODULES[module]}.weight.lora_{which.lower()}"] = weights

    writer = gguf.GGUFWriter(None, arch=arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    writer.add_name("Radiance fine-tune (LoRA)")
    for name in sorted(tensors):
        writer.add_tensor(name, np.ascontiguousarray(tensors[name]))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    try:
        try:
            writer.write_header_to_file(path=tmp)
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
