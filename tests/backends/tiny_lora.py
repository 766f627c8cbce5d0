"""Write a PEFT LoRA adapter for the tiny Llama of tiny_hf_llama.py, and what it answers.

Run with an interpreter that has torch, transformers and peft (Radiance's dev venv):
    python tests/backends/tiny_lora.py MODEL_DIR OUT_DIR
Rank 8 on every projection, lora_B random (PEFT starts it at zero, which would change
nothing), so greedy decoding differs from the base model's. Prints, as JSON, the greedy
answers of the base and of base + adapter (transformers and peft) to PROMPT.
"""

from __future__ import annotations

import json
import sys
from typing import Any

PROMPT = [{"role": "user", "content": "Hello there"}]
NEW_TOKENS = 8
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main(model_dir: str, out: str) -> None:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=PROJECTIONS, task_type="CAUSAL_LM")
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), config)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                parameter.normal_(std=0.5 if "lora_B" in name else 0.1)
    peft.save_pretrained(out)

    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_dict=False)
    prompt = torch.tensor([ids])
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    answers = {"base": greedy(base, prompt, tokenizer)}
    answers["lora"] = greedy(PeftModel.from_pretrained(base, out), prompt, tokenizer)
    print(json.dumps(answers))


def greedy(model: Any, prompt: Any, tokenizer: Any) -> dict[str, Any]:
    import torch

    model.eval()
    with torch.no_grad():
        output = model.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False)
    tokens = output[0, prompt.shape[1] :].tolist()
    return {"ids": tokens, "text": tokenizer.decode(tokens)}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
