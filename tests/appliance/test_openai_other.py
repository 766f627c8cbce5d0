"""Models, legacy completions and embeddings through the official SDK and raw HTTP."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest
from conftest import ALICE, BOB, RunningServer


@pytest.fixture
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=ALICE, max_retries=0)


def test_models_list_shows_pricing_as_declared(server: RunningServer) -> None:
    anonymous = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()
    user = openai.OpenAI(base_url=server.base_url, api_key=BOB, max_retries=0)
    models = {m.id: m for m in user.models.list()}
    assert set(models) == {"tiny", "endless", "plain"}
    tiny = models["tiny"].model_dump()
    assert tiny["object"] == "model" and tiny["owned_by"] == "radiance"
    assert tiny["name"] == "Tiny Random Llama"
    assert tiny["context_length"] == 1024
    assert tiny["pricing"] == {"prompt": "0.10", "completion": "0.40"}
    assert "temperature" in tiny["supported_sampling_parameters"]
    assert models["plain"].model_dump()["supported_sampling_parameters"] == [
        "temperature",
        "max_tokens",
    ]


def test_model_by_id_or_alias_and_unknown(server: RunningServer, client: openai.OpenAI) -> None:
    assert client.models.retrieve("spark").id == "tiny"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("tinny")
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "model_not_found"
    assert "tiny" in error["message"]


def test_routes_also_work_without_the_v1_prefix(server: RunningServer) -> None:
    reply = httpx.post(
        f"{server.root_url}/chat/completions",
        headers={"Authorization": f"Bearer {BOB}"},
        json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
    )
    assert reply.status_code == 200
    assert reply.json()["object"] == "chat.completion"
    listed = httpx.get(f"{server.root_url}/models", headers={"Authorization": f"Bearer {BOB}"})
    assert listed.json()["object"] == "list"


def test_legacy_completion_with_list_prompt_echo_and_logprobs(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model="endless",
        prompt=["Once upon", "a time"],
        max_tokens=4,
        logprobs=2,
        echo=True,
        seed=1,
    )
    assert [c.index for c in reply.choices] == [0, 1]
    assert reply.choices[0].text.startswith("Once upon")
    assert reply.choices[1].text.startswith("a time")
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and len(logprobs.tokens or []) == 4
    assert all(len(top) == 2 for top in logprobs.top_logprobs or [])
    assert reply.usage is not None and reply.usage.completion_tokens == 8


def test_legacy_completion_stream(client: openai.OpenAI) -> None:
    chunks = list(
        client.completions.create(
            model="endless",
            prompt="Tell",
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert chunks[-2].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].text for c in chunks[:-1] if c.choices)


def test_embeddings_float_and_base64_agree(client: openai.OpenAI) -> None:
    default = client.embeddings.create(model="tiny", input=["hello world", "goodbye"])
    floats = client.embeddings.create(
        model="tiny", input=["hello world", "goodbye"], encoding_format="float"
    )
    assert len(default.data) == 2 and default.usage.prompt_tokens > 0
    for a, b in zip(default.data, floats.data, strict=True):
        assert np.allclose(a.embedding, b.embedding, atol=1e-6)
        assert abs(np.linalg.norm(b.embedding) - 1.0) < 1e-3
    assert not np.allclose(floats.data[0].embedding, floats.data[1].embedding)


def test_embeddings_base64_wire_format(server: RunningServer) -> None:
    reply = httpx.post(
        f"{server.base_url}/embeddings",
        headers={"Authorization": f"Bearer {ALICE}"},
        json={"model": "tiny", "input": "hello", "encoding_format": "base64"},
    ).json()
    vector = np.frombuffer(base64.b64decode(reply["data"][0]["embedding"]), dtype="<f4")
    assert vector.shape == (128,)


def test_embeddings_refused_by_a_model_without_them(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="plain", input="hi")
    assert caught.value.body["param"] == "model"  # type: ignore[index]
