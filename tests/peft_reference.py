"""What transformers + PEFT answer: the reference a served fine-tune is checked against."""

from __future__ import annotations

import pathlib
import warnings
from typing import Any


def peft_greedy(
    base: pathlib.Path, adapter: pathlib.Path, messages: list[dict[str, Any]], tokens: int
) -> str:
    """Greedy text of the base's Hugging Face weights with the PEFT adapter on the chat
    `messages`, rendered by the base's chat template (special tokens left out)."""
    import peft
    import torch
    import transformers

    transformers.logging.disable_progress_bar()
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    with warnings.catch_warnings():  # peft calls a transformers property deprecated in v5
        warnings.simplefilter("ignore", FutureWarning)
        tuned = peft.PeftModel.from_pretrained(model, str(adapter))
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    out = tuned.generate(**ids, max_new_tokens=tokens, do_sample=False)
    return str(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
