"""Each family's exact output, written piece by piece by a scripted engine whose chat
template is the family's, answered through the chat endpoint and read by the official
openai SDK: whole (`create`), streamed chunk by chunk and through the SDK's `.stream()`
accumulation. The real templates rendered by llama.cpp: tests/backends/test_family_templates.py."""

from __future__ import annotations

import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fake_engine import ScriptedEngine
from litestar.testing import AsyncTestClient
from openai import AsyncOpenAI, pydantic_function_tool
from pydantic import BaseModel

from appliance.app import create_app
from appliance.config import parse_config_text
from appliance.registry import ModelRegistry, ServedModel

TEMPLATES = pathlib.Path(__file__).parent.parent / "backends" / "family_templates"
KEY = "sk-formats-test-key-1"
BASE = "http://testserver.local"
CONFIG = """
server: {{database: state.db, admin_key: formats-admin-key-0123}}
backends: {{cpu: {{engine: llamacpp}}}}
models:
  - {{id: scripted, backend: cpu, source: fake.gguf, context_length: 4096{extra}}}
keys:
  - {{name: unit, secret: {key}}}
"""
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            },
        },
    }
]
PARIS = {"city": "Paris"}
DS_CALL = (
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
    '{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>'
)
# family template -> (what the model writes, the reasoning it holds, the calls' arguments)
OUTPUTS: dict[str, tuple[str, str | None, list[dict[str, Any]]]] = {
    "llama3": ('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}', None,
               [PARIS]),
    "mistral": ('[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_weather[ARGS]'
                '{"city": "Rome"}', None, [PARIS, {"city": "Rome"}]),
    "deepseek_r1": ("<think>\nThe user wants weather.\n</think>\n\n" + DS_CALL,
                    "The user wants weather.", [PARIS]),
    "qwen3": ('<think>\nWeather.\n</think>\n\n<tool_call>\n{"name": "get_weather", '
              '"arguments": {"city": "Paris"}}\n</tool_call>', "Weather.", [PARIS]),
    "qwen3_coder": ("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>"
                    "\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>", None,
                    [{"city": "Paris", "days": 3}]),
    "harmony": ("<|channel|>analysis<|message|>Weather: call.<|end|><|start|>assistant"
                "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
                '{"city":"Paris"}', "Weather: call.", [PARIS]),
}  # fmt: skip


def pieces(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def app_for(tmp_path: pathlib.Path, engine: ScriptedEngine, extra: str = "") -> AsyncTestClient:  # type: ignore[type-arg]
    (tmp_path / "fake.gguf").write_bytes(b"GGUF")
    text = CONFIG.format(extra=extra, key=KEY)
    loaded = parse_config_text(text, "radiance.yaml", tmp_path, {})
    registry = ModelRegistry([ServedModel(loaded.config.models[0], "cpu", engine)])
    return AsyncTestClient(app=create_app(loaded, registry=registry))


async def sdk_for(
    tmp_path: pathlib.Path, output: str, template: str | None, extra: str = ""
) -> AsyncIterator[tuple[AsyncOpenAI, ScriptedEngine]]:
    engine = ScriptedEngine(pieces(output), template=template)
    async with app_for(tmp_path, engine, extra) as client:
        # The test client is an httpx client over the app itself: the SDK's transport.
        yield AsyncOpenAI(api_key=KEY, base_url=f"{BASE}/v1", http_client=client), engine


def template(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text()


WEATHER: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.mark.parametrize("family", sorted(OUTPUTS))
async def test_family_calls_whole_and_streamed(tmp_path: pathlib.Path, family: str) -> None:
    output, reasoning, arguments = OUTPUTS[family]
    async for sdk, _ in sdk_for(tmp_path, output, template(family)):
        whole = await sdk.chat.completions.create(
            model="scripted", messages=WEATHER, tools=TOOLS, max_tokens=2000
        )
        choice = whole.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        calls = choice.message.tool_calls or []
        assert [c.function.name for c in calls] == ["get_weather"] * len(arguments)  # type: ignore[union-attr]
        assert [json.loads(c.function.arguments) for c in calls] == arguments  # type: ignore[union-attr]
        assert getattr(choice.message, "reasoning_content", None) == reasoning
        details = whole.usage.completion_tokens_details if whole.usage else None
        if reasoning:
            assert details is not None and details.reasoning_tokens
        else:
            assert details is None

        chunks = [
            chunk
            async for chunk in await sdk.chat.completions.create(
                model="scripted",
                messages=WEATHER,
                tools=TOOLS,
                max_tokens=2000,
                stream=True,
                stream_options={"include_usage": True},
            )
        ]
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        assert not any(d.content for d in deltas), "no markup leaks into content"
        thought = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
        assert thought == (reasoning or "")
        starts = [t for d in deltas for t in d.tool_calls or [] if t.id]
        assert [t.index for t in starts] == list(range(len(arguments)))
        assert all(t.type == "function" and t.function and t.function.name for t in starts)
        for index, expected in enumerate(arguments):
            fragments = [
                t.function.arguments or ""
                for d in deltas
                for t in d.tool_calls or []
                if t.index == index and t.function
            ]
            assert json.loads("".join(fragments)) == expected
        assert chunks[-2].choices[0].finish_reason == "tool_calls"
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens == len(pieces(output))

        async with sdk.chat.completions.stream(
            model="scripted", messages=WEATHER, tools=TOOLS, max_tokens=2000
        ) as stream:
            async for _ in stream:
                pass
            final = await stream.get_final_completion()
        message = final.choices[0].message
        assert [json.loads(c.function.arguments) for c in message.tool_calls or []] == arguments


async def test_reasoning_splits_without_tools(tmp_path: pathlib.Path) -> None:
    output = "<think>\nTwo and two.\n</think>\n\nFour."
    async for sdk, _ in sdk_for(tmp_path, output, template("qwen3")):
        whole = await sdk.chat.completions.create(model="scripted", messages=WEATHER)
        message = whole.choices[0].message
        assert message.content == "Four."
        assert getattr(message, "reasoning_content", None) == "Two and two."
        assert whole.choices[0].finish_reason == "stop"


async def test_reasoning_inline_keeps_the_text(tmp_path: pathlib.Path) -> None:
    output = "<think>\nTwo and two.\n</think>\n\nFour."
    extra = ", reasoning: inline"
    async for sdk, _ in sdk_for(tmp_path, output, template("qwen3"), extra):
        whole = await sdk.chat.completions.create(model="scripted", messages=WEATHER)
        message = whole.choices[0].message
        assert message.content == output
        assert getattr(message, "reasoning_content", None) is None
        stream = await sdk.chat.completions.create(model="scripted", messages=WEATHER, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == output


async def test_tool_parser_overrides_the_template(tmp_path: pathlib.Path) -> None:
    output = '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]'
    async for sdk, _ in sdk_for(tmp_path, output, template("qwen3"), ", tool_parser: mistral"):
        whole = await sdk.chat.completions.create(model="scripted", messages=WEATHER, tools=TOOLS)
        (call,) = whole.choices[0].message.tool_calls or []
        assert json.loads(call.function.arguments) == PARIS  # type: ignore[union-attr]


async def test_malformed_call_is_text_and_stop(tmp_path: pathlib.Path) -> None:
    output = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par'
    async for sdk, _ in sdk_for(tmp_path, output, template("qwen3")):
        whole = await sdk.chat.completions.create(model="scripted", messages=WEATHER, tools=TOOLS)
        choice = whole.choices[0]
        assert choice.finish_reason == "stop" and not choice.message.tool_calls
        assert choice.message.content == output


async def test_no_tool_markup_constrains_auto_to_the_generic_json(tmp_path: pathlib.Path) -> None:
    output = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}'
    # The template reads `tools` but shows no markup of its own.
    async for sdk, engine in sdk_for(tmp_path, output, "{{ tools }}{{ messages }}"):
        whole = await sdk.chat.completions.create(model="scripted", messages=WEATHER, tools=TOOLS)
        (call,) = whole.choices[0].message.tool_calls or []
        assert json.loads(call.function.arguments) == PARIS  # type: ignore[union-attr]
        schema = engine.seen[-1].json_schema
        assert schema is not None and "anyOf" in schema


async def test_plain_format_refuses_auto(tmp_path: pathlib.Path) -> None:
    async for sdk, _ in sdk_for(tmp_path, "hi", None, ", tool_parser: plain"):
        with pytest.raises(Exception, match="tool_choice") as info:
            await sdk.chat.completions.create(model="scripted", messages=WEATHER, tools=TOOLS)
        assert getattr(info.value, "status_code", None) == 400


async def test_template_fields_reach_the_template(tmp_path: pathlib.Path) -> None:
    prefill: list[Any] = [*WEATHER, {"role": "assistant", "content": "It is"}]
    async for sdk, engine in sdk_for(tmp_path, " sunny.", template("qwen3")):
        await sdk.chat.completions.create(
            model="scripted",
            messages=prefill,
            reasoning_effort="low",
            extra_body={
                "chat_template_kwargs": {"enable_thinking": False},
                "add_generation_prompt": False,
                "continue_final_message": True,
            },
        )
        assert engine.rendered[-1] == {
            "add_generation_prompt": False,
            "continue_final_message": True,
            "template_kwargs": {"enable_thinking": False},
            "reasoning_effort": "low",
        }
        with pytest.raises(Exception, match="continue_final_message") as info:
            await sdk.chat.completions.create(
                model="scripted", messages=WEATHER, extra_body={"continue_final_message": True}
            )
        assert getattr(info.value, "status_code", None) == 400


async def test_harmony_reasoning_inline_streams_as_it_answers_whole(tmp_path: pathlib.Path) -> None:
    output = (
        "<|channel|>analysis<|message|>Two and two.<|end|><|start|>assistant"
        "<|channel|>final<|message|>Four."
    )
    async for sdk, _ in sdk_for(tmp_path, output, template("harmony"), ", reasoning: inline"):
        whole = await sdk.chat.completions.create(model="scripted", messages=WEATHER)
        assert whole.choices[0].message.content == "Two and two.\n\nFour."
        stream = await sdk.chat.completions.create(model="scripted", messages=WEATHER, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == whole.choices[0].message.content


async def test_sdk_parse_reads_a_family_call_into_its_model(tmp_path: pathlib.Path) -> None:
    class GetWeather(BaseModel):
        city: str

    output = '<tool_call>\n{"name": "GetWeather", "arguments": {"city": "Paris"}}\n</tool_call>'
    async for sdk, _ in sdk_for(tmp_path, output, template("qwen3")):
        parsed = await sdk.chat.completions.parse(
            model="scripted", messages=WEATHER, tools=[pydantic_function_tool(GetWeather)]
        )
        (call,) = parsed.choices[0].message.tool_calls or []
        assert call.function.parsed_arguments == GetWeather(city="Paris")  # type: ignore[union-attr]


async def test_reasoning_tokens_of_every_choice_are_counted_in_a_stream(
    tmp_path: pathlib.Path,
) -> None:
    output = "<think>\nTwo and two.\n</think>\n\nFour."
    async for sdk, _ in sdk_for(tmp_path, output, template("qwen3")):
        whole = await sdk.chat.completions.create(model="scripted", messages=WEATHER, n=2)
        assert whole.usage and whole.usage.completion_tokens_details
        spent = whole.usage.completion_tokens_details.reasoning_tokens
        assert spent and spent % 2 == 0
        stream = await sdk.chat.completions.create(
            model="scripted",
            messages=WEATHER,
            n=2,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        usage = chunks[-1].usage
        assert usage and usage.completion_tokens_details
        assert usage.completion_tokens_details.reasoning_tokens == spent
        assert usage.completion_tokens == whole.usage.completion_tokens


async def test_json_without_tools_streams_as_it_comes(tmp_path: pathlib.Path) -> None:
    output = '{"answer": "Four", "sure": true}'
    async for sdk, _ in sdk_for(tmp_path, output, template("llama3")):
        stream = await sdk.chat.completions.create(
            model="scripted", messages=WEATHER, stream=True, response_format={"type": "json_object"}
        )
        texts = [c.choices[0].delta.content async for c in stream if c.choices]
        assert "".join(t or "" for t in texts) == output
        assert len([t for t in texts if t]) > 2, "not held back to the end"


async def test_a_template_without_tools_reads_the_hermes_blocks_it_was_taught(
    tmp_path: pathlib.Path,
) -> None:
    output = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    async for sdk, engine in sdk_for(tmp_path, output, "{{ messages }}"):
        whole = await sdk.chat.completions.create(model="scripted", messages=WEATHER, tools=TOOLS)
        (call,) = whole.choices[0].message.tool_calls or []
        assert json.loads(call.function.arguments) == PARIS  # type: ignore[union-attr]
        assert engine.seen[-1].json_schema is None


async def test_usage_has_no_reasoning_details_when_nothing_was_reasoned(
    tmp_path: pathlib.Path,
) -> None:
    async for sdk, _ in sdk_for(tmp_path, "Four.", template("qwen3")):
        stream = await sdk.chat.completions.create(
            model="scripted",
            messages=WEATHER,
            n=2,
            stream=True,
            stream_options={"include_usage": True},
        )
        usage = [chunk async for chunk in stream][-1].usage
        assert usage is not None and usage.completion_tokens_details is None
