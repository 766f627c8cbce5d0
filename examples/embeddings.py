"""Embeddings through the SDK (it asks for base64 by default; Radiance answers both).

.venv/bin/python examples/embeddings.py
"""

import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("RADIANCE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ["ALICE_KEY"],
)
result = client.embeddings.create(model="tiny", input=["first text", "second text"])
for item in result.data:
    print(item.index, len(item.embedding), [round(x, 4) for x in item.embedding[:4]])
print("usage:", result.usage)
