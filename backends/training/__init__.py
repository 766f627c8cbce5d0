"""Fine-tuning: LoRA supervised training on a model's Hugging Face weights.

``examples`` checks fine-tune files (no torch); ``spec`` is the job's contract with the
server; ``trainer`` is the subprocess that trains (``python -m backends.training.trainer
SPEC.json``); ``gguf_lora`` turns its PEFT adapter into a GGUF LoRA for llama.cpp.
"""
