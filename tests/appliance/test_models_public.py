"""GET /v1/models without a key: the public models; with a key: what the key may use."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import httpx
import openai
import pytest
from conftest import ADMIN, BOB, RunningServer, config_text, start_server

CAROL = "sk-carol-test-5555555555"


@pytest.fixture(scope="module")
def listed(
    tmp_path_factory: pytest.TempPathFactory, models_dir: pathlib.Path
) -> Iterator[RunningServer]:
    """The test config with `plain` marked private and a key that may use `tiny` only."""
    text = config_text(models_dir, keys=[f"{{name: carol, secret: {CAROL}, models: [tiny]}}"])
    private = text.replace(
        "\n    embeddings: false\n", "\n    embeddings: false\n    public: false\n"
    )
    assert private != text
    running = start_server(tmp_path_factory.mktemp("public-models"), private)
    yield running
    running.stop()


def test_no_key_lists_the_public_models_with_pricing(listed: RunningServer) -> None:
    for base in (listed.base_url, listed.root_url):
        reply = httpx.get(f"{base}/models")
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["object"] == "list"
        models = {m["id"]: m for m in body["data"]}
        assert set(models) == {"tiny", "endless"}  # `plain` is private
    tiny = models["tiny"]
    assert tiny["pricing"] == {"prompt": "0.10", "completion": "0.40"}
    assert tiny["context_length"] == 1024 and tiny["object"] == "model"
    assert "status" not in tiny and "backend" not in tiny  # no admin fields


def test_no_key_finds_public_models_only(listed: RunningServer) -> None:
    assert httpx.get(f"{listed.base_url}/models/spark").json()["id"] == "tiny"
    for name in ("plain", "nothing-here", "plan"):
        reply = httpx.get(f"{listed.base_url}/models/{name}")
        assert reply.status_code == 404
        error = reply.json()["error"]
        assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
        assert error["message"] == f"The model `{name}` does not exist on this server."


def sdk(server: RunningServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def test_a_key_lists_what_it_may_use(listed: RunningServer) -> None:
    with sdk(listed, CAROL) as carol:
        assert [m.id for m in carol.models.list()] == ["tiny"]
        with pytest.raises(openai.NotFoundError):
            carol.models.retrieve("plain")
    with sdk(listed, BOB) as bob:
        assert {m.id for m in bob.models.list()} == {"tiny", "endless", "plain"}
        assert bob.models.retrieve("plain").id == "plain"  # hidden from no-key callers only


def test_the_admin_sees_every_model_with_its_state(listed: RunningServer) -> None:
    with sdk(listed, ADMIN) as admin:
        models = {m.id: m.model_dump() for m in admin.models.list()}
        assert admin.models.retrieve("tiny").model_dump()["requests_running"] == 0
    assert set(models) == {"tiny", "endless", "plain"}
    assert models["plain"]["status"] == "ready" and models["plain"]["backend"] == "cpu"


def test_a_bad_key_is_refused_not_treated_as_none(listed: RunningServer) -> None:
    with sdk(listed, "none") as client, pytest.raises(openai.AuthenticationError):
        client.models.list()
    for header in ("Bearer wrong", "", "Basic abc"):
        for path in ("/models", "/models/tiny"):
            reply = httpx.get(f"{listed.base_url}{path}", headers={"Authorization": header})
            assert reply.status_code == 401, (header, path)
            assert reply.json()["error"]["type"] == "authentication_error"
