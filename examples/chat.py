"""Chat with Radiance through the official OpenAI SDK; only base_url changes.

source .radiance/demo-keys.env      # or export ALICE_KEY=...
.venv/bin/python examples/chat.py
"""

import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("RADIANCE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ["ALICE_KEY"],
)

reply = client.chat.completions.create(
    model="tiny",
    messages=[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Write a haiku about servers."},
    ],
    max_tokens=40,
    temperature=0.7,
    seed=7,
)
print(reply.choices[0].message.content)
print("usage:", reply.usage)

print("streaming:", end=" ", flush=True)
stream = client.chat.completions.create(
    model="tiny",
    messages=[{"role": "user", "content": "Count to five."}],
    max_tokens=20,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
    elif chunk.usage:
        print(f"\nstreamed {chunk.usage.completion_tokens} tokens")
