"""The openai-agents SDK, with its default model, against a real `radiance up`.

An Agent that names no model runs on the default provider's model for `get_default_model()`:
`OpenAIResponsesModel`, over the Responses API. The test server routes that very name to the
tiny demo model with an alias, so the SDK is set up only as its docs show for a compatible
server (a default client, the responses API, no tracing).

The default model's own settings (for a GPT-5 name: `reasoning.effort` and `text.verbosity`
low) ask for what Radiance cannot do, and are refused naming the parameter; the other tests
give explicit settings, as an Agent on a self-hosted model would.

The demo model is random: its text is gibberish, so the tests assert shapes. Decoding is
greedy (temperature 0), so each prompt's answer is fixed; but some answers run into
`max_output_tokens`, which the Responses API reports as `status: "incomplete"` and the SDK
raises as a ModelBehaviorError. `first_finished` tries a fixed list of prompts in turn and
checks that each cut answer was reported that way.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Literal, TypeVar

import openai
import pytest
from agents import (
    Agent,
    ItemHelpers,
    MessageOutputItem,
    ModelBehaviorError,
    ModelSettings,
    RawResponsesStreamEvent,
    Runner,
    RunResult,
    RunResultStreaming,
    ToolCallItem,
    ToolCallOutputItem,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    set_tracing_disabled,
)
from agents.models import get_default_model, get_default_model_settings
from conftest import ALICE, RunningServer, config_text, start_server
from openai import AsyncOpenAI
from pydantic import BaseModel

pytestmark = pytest.mark.slow

DEFAULT_MODEL = get_default_model()  # what an Agent without `model=` asks for
SETTINGS = ModelSettings(max_tokens=96, temperature=0.0)  # short greedy answers
PROMPTS = [f"Say something about the number {n}." for n in range(10)]
CITIES = ("Paris", "Rome")

R = TypeVar("R", RunResult, RunResultStreaming)


@pytest.fixture(scope="module")
def agents_server(
    tmp_path_factory: pytest.TempPathFactory, models_dir: pathlib.Path
) -> Iterator[RunningServer]:
    """A server where the SDK's default model name is an alias of the tiny demo model."""
    config = config_text(models_dir)
    routed = config.replace("aliases: [spark]", f"aliases: [spark, {DEFAULT_MODEL}]")
    assert routed != config
    running = start_server(tmp_path_factory.mktemp("agents"), routed)
    yield running
    running.stop()


@pytest.fixture
async def client(agents_server: RunningServer) -> AsyncIterator[AsyncOpenAI]:
    """The SDK's documented setup for an OpenAI-compatible server that speaks Responses."""
    client = AsyncOpenAI(base_url=agents_server.base_url, api_key=ALICE, max_retries=0)
    set_default_openai_client(client, use_for_tracing=False)
    set_default_openai_api("responses")
    set_tracing_disabled(True)
    yield client
    await client.close()


def ledger(server: RunningServer) -> list[sqlite3.Row]:
    """The server's rows for requests that named the SDK's default model."""
    with sqlite3.connect(server.database) as db:
        db.row_factory = sqlite3.Row
        query = "SELECT * FROM requests WHERE route_model = ? ORDER BY started_at"
        return list(db.execute(query, (DEFAULT_MODEL,)))


async def first_finished(attempt: Callable[[str], Awaitable[R]]) -> R:
    """The first prompt's run whose every answer ended before max_output_tokens."""
    cut: list[str] = []
    for prompt in PROMPTS:
        try:
            return await attempt(prompt)
        except ModelBehaviorError as error:
            cut.append(f"{prompt}: {error}")
        # The one failure a random model may cause: an answer cut at the token limit.
        assert "response.incomplete" in cut[-1] and "max_output_tokens" in cut[-1], cut[-1]
    pytest.fail(f"every prompt's answer ran into max_output_tokens: {cut}")


async def test_default_settings_are_refused_naming_the_parameter(client: AsyncOpenAI) -> None:
    defaults = get_default_model_settings()
    agent = Agent(name="defaults")
    assert agent.model is None and agent.model_settings == defaults
    with pytest.raises(openai.BadRequestError) as refused:
        await Runner.run(agent, "Say something.", max_turns=1)
    body: Any = refused.value.body
    assert refused.value.code == "unsupported_parameter"
    assert body["param"] in ("reasoning", "text.verbosity"), body


async def test_plain_text_run(client: AsyncOpenAI, agents_server: RunningServer) -> None:
    agent = Agent(name="terse", instructions="You are terse.", model_settings=SETTINGS)
    before = len(ledger(agents_server))
    result = await first_finished(lambda prompt: Runner.run(agent, prompt, max_turns=2))

    assert isinstance(result.final_output, str) and result.final_output
    (response,) = result.raw_responses
    assert response.response_id is not None
    assert response.usage.requests == 1
    assert response.usage.input_tokens > 0 and 1 <= response.usage.output_tokens <= 96
    # Stored by default (the SDK sends no `store`): the server hands it back.
    stored = await client.responses.retrieve(response.response_id)
    assert stored.status == "completed" and stored.model == "tiny"
    assert stored.output_text == result.final_output
    assert stored.instructions == "You are terse."
    rows = ledger(agents_server)[before:]
    assert rows and {(r["model"], r["status"]) for r in rows} == {("tiny", "ok")}
    assert rows[-1]["completion_tokens"] == response.usage.output_tokens


def weather_tool(calls: list[str]) -> Any:
    @function_tool
    def get_weather(city: Literal["Paris", "Rome"]) -> str:
        """The weather in a city.

        Args:
            city: The city.
        """
        calls.append(city)
        return f"{city}: sunny, 21C"

    return get_weather


def check_round_trip(result: RunResult | RunResultStreaming, calls: list[str]) -> None:
    """The model called the tool once, the SDK ran it, and a second answer ended the run."""
    assert len(calls) == 1 and calls[0] in CITIES
    kinds = [type(item) for item in result.new_items]
    assert kinds == [ToolCallItem, ToolCallOutputItem, MessageOutputItem], kinds
    call, output, message = result.new_items
    assert call.raw_item.name == "get_weather"  # type: ignore[union-attr]
    assert output.output == f"{calls[0]}: sunny, 21C"  # type: ignore[union-attr]
    assert isinstance(result.final_output, str)
    assert result.final_output == ItemHelpers.text_message_output(message)  # type: ignore[arg-type]
    assert len(result.raw_responses) == 2


async def test_function_tool_round_trip(client: AsyncOpenAI, agents_server: RunningServer) -> None:
    calls: list[str] = []
    agent = Agent(
        name="weather",
        instructions="Answer with the weather tool.",
        tools=[weather_tool(calls)],
        # Names the tool, so the random model is constrained to call it; the SDK drops
        # tool_choice after the call (reset_tool_choice), so the second answer is text.
        model_settings=SETTINGS.resolve(ModelSettings(tool_choice="get_weather")),
    )
    before = len(ledger(agents_server))

    async def attempt(prompt: str) -> RunResult:
        calls.clear()
        return await Runner.run(agent, f"{prompt} What is the weather in Paris?", max_turns=3)

    result = await first_finished(attempt)
    check_round_trip(result, calls)

    first, second = result.raw_responses
    assert first.response_id and second.response_id and first.response_id != second.response_id
    stored_call = await client.responses.retrieve(first.response_id)
    assert [item.type for item in stored_call.output] == ["function_call"]
    assert stored_call.tool_choice.type == "function"  # type: ignore[union-attr]
    stored_answer = await client.responses.retrieve(second.response_id)
    assert [item.type for item in stored_answer.output] == ["message"]
    # The SDK sent the whole conversation back (no previous_response_id): question, call
    # and its output are the second request's input.
    page = await client.responses.input_items.list(second.response_id)
    items = [item.type for item in page.data]
    assert "function_call" in items and "function_call_output" in items
    # Every model call was a request in the ledger, each billed.
    rows = ledger(agents_server)[before:]
    assert len(rows) >= 2
    assert all(r["status"] == "ok" and r["model"] == "tiny" for r in rows)
    assert [r["completion_tokens"] for r in rows[-2:]] == [
        first.usage.output_tokens,
        second.usage.output_tokens,
    ]


class Forecast(BaseModel):
    sunny: bool
    sky: Literal["clear", "cloudy", "rain"]


@dataclasses.dataclass
class Reading:
    city: Literal["Paris", "Rome"]
    warm: bool


async def test_structured_output_is_an_instance(client: AsyncOpenAI) -> None:
    # The schema bounds the answer (llama.cpp's grammar bounds even its whitespace), so a cut
    # is unlikely; first_finished covers a machine whose greedy answer differs.
    forecaster = Agent(name="forecast", output_type=Forecast, model_settings=SETTINGS)
    result = await first_finished(
        lambda prompt: Runner.run(forecaster, f"{prompt} The weather in Rome?", max_turns=1)
    )
    assert isinstance(result.final_output, Forecast)
    (response,) = result.raw_responses
    assert response.response_id is not None
    stored = await client.responses.retrieve(response.response_id)
    assert stored.text is not None and stored.text.format.type == "json_schema"
    assert stored.text.format.name == "final_output"  # type: ignore[union-attr]
    assert Forecast.model_validate_json(stored.output_text) == result.final_output

    reader = Agent(name="reading", output_type=Reading, model_settings=SETTINGS)
    types: list[str] = []
    streamed = await first_finished(
        lambda prompt: streamed_run(reader, f"{prompt} Read the thermometer.", types)
    )
    assert isinstance(streamed.final_output, Reading)
    assert streamed.final_output.city in CITIES
    assert types[-1] == "response.completed"


async def streamed_run(agent: Agent[Any], prompt: str, types: list[str]) -> RunResultStreaming:
    """Run to the end, keeping the raw Responses event types the SDK passed on."""
    types.clear()
    result = Runner.run_streamed(agent, prompt, max_turns=3)
    async for event in result.stream_events():
        if isinstance(event, RawResponsesStreamEvent):
            types.append(event.data.type)
    return result


async def test_streamed_run(client: AsyncOpenAI) -> None:
    agent = Agent(name="terse", instructions="You are terse.", model_settings=SETTINGS)
    types: list[str] = []
    result = await first_finished(lambda prompt: streamed_run(agent, prompt, types))

    assert isinstance(result.final_output, str) and result.final_output
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert "response.output_text.delta" in types
    deltas = types.index("response.output_text.delta")
    assert types[deltas - 2 : deltas] == [
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    (response,) = result.raw_responses
    assert response.response_id is not None
    assert (
        await client.responses.retrieve(response.response_id)
    ).output_text == result.final_output


async def test_streamed_tool_round_trip(client: AsyncOpenAI) -> None:
    calls: list[str] = []
    agent = Agent(
        name="weather",
        instructions="Answer with the weather tool.",
        tools=[weather_tool(calls)],
        # One call: with parallel calls allowed, greedy decoding of a random model under
        # `required` keeps adding calls up to max_output_tokens.
        model_settings=SETTINGS.resolve(
            ModelSettings(tool_choice="required", parallel_tool_calls=False)
        ),
    )
    types: list[str] = []

    async def attempt(prompt: str) -> RunResultStreaming:
        calls.clear()
        return await streamed_run(agent, f"{prompt} Weather in Rome?", types)

    result = await first_finished(attempt)
    check_round_trip(result, calls)
    assert types.count("response.completed") == 2
    assert "response.function_call_arguments.delta" in types
    assert "response.function_call_arguments.done" in types
