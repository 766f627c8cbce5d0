"""The model side of training: the base with LoRA, AdamW, one step, evaluation, state.

Imported by the trainer only once the files are valid (it imports torch, transformers
and peft, a few seconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from backends.training.render import IGNORE, Tokenized
from backends.training.spec import TrainingSpec

# LoRA on the attention projections: rank 8, alpha 16 (PEFT scales the update by
# alpha / rank = 2, as llama.cpp does from adapter.lora.alpha).
LORA_RANK = 8
LORA_ALPHA = 16
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


class Loop:
    def __init__(self, spec: TrainingSpec, pad: int, learning_rate: float, total: int) -> None:
        torch.manual_seed(spec.seed)  # LoRA A's initial values
        self.device = torch.device(spec.device)
        self.pad = pad
        base = AutoModelForCausalLM.from_pretrained(spec.base, dtype=torch.float32)
        config = LoraConfig(
            r=LORA_RANK,
            lora_alpha=LORA_ALPHA,
            target_modules=list(LORA_TARGETS),
            lora_dropout=0.0,
            bias="none",
            task_type="CAUSAL_LM",
        )
        self.model: Any = get_peft_model(base, config).to(self.device)
        self.model.train()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: max(0.0, 1.0 - step / max(1, total))
        )

    def _tensors(self, batch: Sequence[Tokenized]) -> tuple[torch.Tensor, ...]:
        width = max(len(t.ids) for t in batch)
        ids = torch.full((len(batch), width), self.pad, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, item in enumerate(batch):
            n = len(item.ids)
            ids[row, :n] = torch.tensor(item.ids)
            labels[row, :n] = torch.tensor(item.labels)
            mask[row, :n] = 1
        return ids.to(self.device), labels.to(self.device), mask.to(self.device)

    def _loss(self, batch: Sequence[Tokenized]) -> tuple[torch.Tensor, int, int]:
        """Summed loss over the trained tokens, how many were right (greedy), how many."""
        ids, labels, mask = self._tensors(batch)
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        target = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            target.reshape(-1),
            ignore_index=IGNORE,
            reduction="sum",
        )
        counted = target != IGNORE
        correct = int(((logits.argmax(-1) == target) & counted).sum())
        return loss, correct, int(counted.sum())

    def step(self, batch: Sequence[Tokenized]) -> tuple[float, float]:
        """One optimizer step; the batch's mean loss and token accuracy."""
        loss, correct, count = self._loss(batch)
        mean = loss / max(1, count)
        self.optimizer.zero_grad(set_to_none=True)
        mean.backward()
        self.optimizer.step()
        self.scheduler.step()
        return float(mean.detach()), correct / max(1, count)

    def evaluate(self, items: Sequence[Tokenized], batch_size: int) -> float:
        """Mean loss per trained token over ``items``."""
        self.model.eval()
        total, tokens = 0.0, 0
        with torch.no_grad():
            for first in range(0, len(items), batch_size):
                loss, _correct, count = self._loss(items[first : first + batch_size])
                total, tokens = total + float(loss), tokens + count
        self.model.train()
        return total / max(1, tokens)

    def state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def resume(self, checkpoint: Path, state: dict[str, Any]) -> None:
        weights = load_file(str(checkpoint / "adapter_model.safetensors"))
        set_peft_model_state_dict(self.model, weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
