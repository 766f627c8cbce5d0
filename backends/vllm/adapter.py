"""A PEFT LoRA adapter folder as vLLM serves it: its rank, and the flags that allow it.

vLLM serves LoRA adapters only when started with `--enable-lora` and a `--max-lora-rank`
at least the adapter's rank `r`, chosen from the ranks vLLM accepts. Radiance loads the
adapter once the server is ready, through vLLM's runtime API (`POST /v1/load_lora_adapter`,
allowed by `VLLM_ALLOW_RUNTIME_LORA_UPDATING`), under the model's id, so requests that
name the model get the adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

# The values of vLLM's `--max-lora-rank` (vllm/config/lora.py `MaxLoRARanks`), from 8 up.
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


class AdapterError(Exception):
    """An adapter folder vLLM cannot load: no adapter_config.json, or no usable rank."""


def lora_rank(folder: Path) -> int:
    """The rank `r` of the PEFT adapter in `folder`, from its adapter_config.json."""
    config = folder / "adapter_config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdapterError(f"adapter `{folder}` has no adapter_config.json") from None
    except (OSError, ValueError) as error:
        raise AdapterError(f"cannot read `{config}`: {error}") from None
    if not isinstance(data, dict):
        raise AdapterError(f"`{config}` is not a JSON object")
    ranks = [data.get("r")]
    if isinstance(data.get("rank_pattern"), dict):  # ranks of some modules, above `r`
        ranks += list(data["rank_pattern"].values())
    valid = [r for r in ranks if isinstance(r, int) and not isinstance(r, bool) and r >= 1]
    if len(valid) != len(ranks):
        raise AdapterError(f"`{config}` has no rank `r` (a positive integer)")
    return max(valid)


def max_lora_rank(rank: int) -> int:
    """The smallest `--max-lora-rank` vLLM accepts that holds `rank`."""
    for allowed in LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise AdapterError(f"LoRA rank {rank} is above {LORA_RANKS[-1]}, the most vLLM serves")
