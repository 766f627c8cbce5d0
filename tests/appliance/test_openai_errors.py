"""Every bad input gets OpenAI's error envelope with the right status, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from conftest import ALICE, RunningServer


def post(
    server: RunningServer, path: str, body: Any, key: str | None = ALICE, **kwargs: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, (bytes, str)):
        return httpx.post(
            f"{server.base_url}{path}",
            content=body,
            headers={**headers, "content-type": "application/json"},
            **kwargs,
        )
    return httpx.post(f"{server.base_url}{path}", json=body, headers=headers, **kwargs)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["code"], str) and error["message"]
    assert "Traceback" not in response.text
    return error


def chat(**fields: Any) -> dict[str, Any]:
    return {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        **fields,
    }


def test_missing_or_wrong_key_is_401(server: RunningServer) -> None:
    assert error_of(post(server, "/chat/completions", chat(), key=None), 401)["code"] == (
        "invalid_api_key"
    )
    assert (
        error_of(post(server, "/chat/completions", chat(), key="sk-nope-123456"), 401)["code"]
        == "invalid_api_key"
    )
    sdk = openai.OpenAI(base_url=server.base_url, api_key="wrong-key-123", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        sdk.embeddings.create(model="tiny", input="x")


def test_unknown_model_is_404(server: RunningServer) -> None:
    error = error_of(post(server, "/chat/completions", chat(model="gpt-9")), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"presence_penalty": 2.1}, "presence_penalty"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"temperature": "hot"}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]",
        ),
    ],
)
def test_bad_values_are_400_naming_the_parameter(
    server: RunningServer, fields: dict[str, Any], param: str
) -> None:
    error = error_of(post(server, "/chat/completions", chat(**fields)), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_missing_model_field(server: RunningServer) -> None:
    body = chat()
    del body["model"]
    assert error_of(post(server, "/chat/completions", body), 400)["param"] == "model"


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"'])
def test_malformed_bodies(server: RunningServer, raw: bytes) -> None:
    assert error_of(post(server, "/chat/completions", raw), 400)["code"] == "invalid_json"


def test_undeclared_parameter_is_400_but_its_default_is_fine(server: RunningServer) -> None:
    error = error_of(post(server, "/chat/completions", chat(model="plain", seed=3)), 400)
    assert error["param"] == "seed" and error["code"] == "unsupported_parameter"
    error = error_of(post(server, "/chat/completions", chat(model="plain", top_p=0.5)), 400)
    assert error["param"] == "top_p"
    fine = post(server, "/chat/completions", chat(model="plain", top_p=1, n=1, temperature=0.5))
    assert fine.status_code == 200


def test_context_length_exceeded(server: RunningServer) -> None:
    error = error_of(post(server, "/chat/completions", chat(model="plain", max_tokens=250)), 400)
    assert error["code"] == "context_length_exceeded"
    long_prompt = "word " * 2000
    error = error_of(
        post(server, "/completions", {"model": "tiny", "prompt": long_prompt, "max_tokens": 5}),
        400,
    )
    assert error["code"] == "context_length_exceeded"
    error = error_of(post(server, "/embeddings", {"model": "tiny", "input": long_prompt}), 400)
    assert error["code"] == "context_length_exceeded"


def test_body_over_the_limit_is_413(server: RunningServer) -> None:
    huge = chat(messages=[{"role": "user", "content": "x" * 100_000}])
    assert error_of(post(server, "/chat/completions", huge), 413)["code"] == "request_too_large"


def test_unknown_route_and_method(server: RunningServer) -> None:
    assert error_of(httpx.get(f"{server.base_url}/nothing-here"), 404)["code"] == "not_found"
    assert error_of(httpx.get(f"{server.base_url}/chat/completions"), 405)


def test_unknown_fields_are_accepted(server: RunningServer) -> None:
    reply = post(server, "/chat/completions", chat(metadata={"a": 1}, store=False))
    assert reply.status_code == 200


def test_bad_json_schema_is_400(server: RunningServer) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}
    error = error_of(post(server, "/chat/completions", chat(response_format=fmt)), 400)
    assert error["param"] == "response_format"


def test_legacy_and_embedding_errors(server: RunningServer) -> None:
    assert error_of(post(server, "/completions", {"model": "tiny"}), 400)["param"] == "prompt"
    assert (
        error_of(
            post(server, "/completions", {"model": "tiny", "prompt": "x", "suffix": "y"}), 400
        )["param"]
        == "suffix"
    )
    assert (
        error_of(
            post(server, "/embeddings", {"model": "tiny", "input": "x", "encoding_format": "hex"}),
            400,
        )["param"]
        == "encoding_format"
    )
