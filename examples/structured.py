"""Structured output and tool calls: the JSON schema really constrains what the model writes.

.venv/bin/python examples/structured.py
"""

import json
import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("RADIANCE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ["ALICE_KEY"],
)

schema = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Paris", "Rome", "Lisbon"]},
        "sunny": {"type": "boolean"},
    },
    "required": ["city", "sunny"],
    "additionalProperties": False,
}
reply = client.chat.completions.create(
    model="tiny",
    messages=[{"role": "user", "content": "Pick a city and say if it is sunny."}],
    response_format={"type": "json_schema", "json_schema": {"name": "weather", "schema": schema}},
    max_tokens=60,
)
print("structured:", json.loads(reply.choices[0].message.content or "{}"))

weather_tool = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"enum": ["Paris", "Rome", "Lisbon"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
reply = client.chat.completions.create(
    model="tiny",
    messages=[{"role": "user", "content": "What's the weather in Rome?"}],
    tools=[weather_tool],
    tool_choice={"type": "function", "function": {"name": "get_weather"}},
    max_tokens=40,
)
call = reply.choices[0].message.tool_calls[0]
print("tool call:", call.function.name, json.loads(call.function.arguments))
