"""Training text for the demo model's byte-level BPE tokenizer.

Ordinary English plus JSON-ish and code-ish snippets, so that words, digits and the
JSON punctuation used by tool calls ({ } " : , [ ] true false null) all become tokens.
"""

from __future__ import annotations

CORPUS = r"""
The morning light came slowly over the hills, and the small town began to wake up.
A baker opened the door of his shop and set out fresh bread on the wooden shelves.
Children walked to school with their bags, talking about the weather and the games
they would play after class. The river was quiet, and a few birds sat on the old bridge.

It is a simple idea: when you ask a good question, you often get a good answer.
People have always shared stories, recipes, maps and songs with each other. Some of
these were written down in books, while others were passed from parent to child.
Today we keep most of our notes on computers, but the habit of sharing is the same.

Here is how to make a cup of tea. First, boil fresh water. Then warm the pot, add one
spoon of tea for each person, and pour the water over the leaves. Wait three to five
minutes before you pour. You may add milk, sugar, honey or a slice of lemon.

The assistant should answer clearly and politely. If the user asks about the weather,
the assistant may call a tool to look it up. If the question is about a city, such as
Paris, London, Berlin, Tokyo or New York, the answer should name the city and give the
temperature in degrees. Thank you for your question! Is there anything else I can help
you with today? Sure, I would be happy to help. Let me check that for you.

A short history of numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 20 25 42 50 100 256 512 1024
2048 3.14 2.5 -1 -40 1999 2000 2024 2025. We count, we measure, and we compare values.
The first number is one, the second is two, and the third is three.

{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
{"name": "search", "arguments": {"query": "best tea in London", "limit": 5}}
{"name": "add", "arguments": {"a": 2, "b": 3}}
{"type": "function", "function": {"name": "get_time", "description": "Get the time",
 "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}},
 "required": ["timezone"]}}}
{"id": "call_1", "ok": true, "value": null, "items": [1, 2, 3], "done": false}
{"temperature": 21.5, "humidity": 0.6, "wind": {"speed": 12, "direction": "north"}}
[{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there!"}]
{"valid": true, "count": 0, "tags": ["a", "b", "c"], "nested": {"list": [], "map": {}}}

def add(a: int, b: int) -> int:
    return a + b

def greet(name: str) -> str:
    if not name:
        return "Hello, world!"
    return f"Hello, {name}!"

for i in range(10):
    print(i, i * i)

class Point:
    def __init__(self, x: float, y: float) -> None:
        self.x = x
        self.y = y

function sum(list) { let total = 0; for (const x of list) { total += x; } return total; }
const config = { "debug": false, "port": 8080, "hosts": ["localhost", "127.0.0.1"] };
if (x == null || y != 0) { return [x, y]; } else { return {}; }

<tool_call>
{"name": "get_weather", "arguments": {"city": "Berlin"}}
</tool_call>
<tool_response>
{"temperature": 18, "condition": "cloudy"}
</tool_response>

The weather in Berlin is cloudy, and the temperature is 18 degrees. In Paris it is
sunny and warm. Tomorrow there may be some rain in the north, so take an umbrella.
Good night, and see you again soon. The end.
"""
