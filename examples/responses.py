"""The Responses API (`client.responses`): text, a streamed answer, a function tool round
trip continued with `previous_response_id`, and structured output.

.venv/bin/python examples/responses.py
"""

import json
import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("RADIANCE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ["ALICE_KEY"],
)

response = client.responses.create(
    model="tiny", instructions="Be brief.", input="Say hello.", max_output_tokens=20
)
print("text:", response.output_text, response.usage)

with client.responses.stream(model="tiny", input="Stream a line.", max_output_tokens=12) as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            print(event.delta, end="", flush=True)
print("\nstreamed")

weather = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"enum": ["Paris", "Rome", "Lisbon"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
asked = client.responses.create(
    model="tiny",
    input="What's the weather in Rome?",
    tools=[weather],
    tool_choice={"type": "function", "name": "get_weather"},
    max_output_tokens=40,
)
call = next(item for item in asked.output if item.type == "function_call")
print("function call:", call.name, json.loads(call.arguments))
answered = client.responses.create(
    model="tiny",
    previous_response_id=asked.id,  # the conversation so far is kept by the server
    input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"sunny": true}'}],
    tools=[weather],
    max_output_tokens=20,
)
print("after the tool:", answered.output_text)

schema = {
    "type": "object",
    "properties": {"city": {"enum": ["Paris", "Rome", "Lisbon"]}, "sunny": {"type": "boolean"}},
    "required": ["city", "sunny"],
    "additionalProperties": False,
}
structured = client.responses.create(
    model="tiny",
    input="Pick a city and say if it is sunny.",
    text={"format": {"type": "json_schema", "name": "weather", "schema": schema}},
    max_output_tokens=60,
)
print("structured:", json.loads(structured.output_text))
