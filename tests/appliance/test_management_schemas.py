"""The management API's responses are typed: /schema/openapi.json documents each one, and
the bytes a real server sends match both the document and the Structs it names."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import msgspec
from conftest import ADMIN, RunningServer

from appliance.management.typed_envelope import ErrorBody, Item, Page
from appliance.management.webhook_view import CreatedWebhook, DeliveryView, WebhookView
from appliance.management.wire import (
    ApiKeyView,
    CreatedKey,
    DatasetView,
    Deployment,
    FineTuningJobView,
    KeyInfo,
    LiveSnapshot,
    Tier,
)

ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
REF = "#/components/schemas/"

# (path, method, success status, the Struct in `data` (a list for a page), error statuses)
OPERATIONS: list[tuple[str, str, str, str, tuple[str, ...]]] = [
    ("/v1/api-keys", "get", "200", "KeyInfo[]", ("400", "401", "403")),
    ("/v1/api-keys", "post", "201", "CreatedKey", ("400", "401", "403", "409")),
    ("/v1/api-keys/{key_id}", "get", "200", "ApiKeyView", ("401", "403", "404")),
    ("/v1/api-keys/{key_id}", "put", "200", "ApiKeyView", ("400", "401", "403", "404", "409")),
    ("/v1/api-keys/{key_id}", "delete", "200", "ApiKeyView", ("401", "403", "404", "409")),
    ("/v1/tiers", "get", "200", "Tier+", ("401", "403")),
    ("/v1/analytics/live", "get", "200", "LiveSnapshot", ("400", "401", "403")),
    ("/v1/webhooks", "get", "200", "WebhookView[]", ("400", "401", "403")),
    ("/v1/webhooks", "post", "201", "CreatedWebhook", ("400", "401", "403")),
    ("/v1/webhooks/{webhook_id}", "get", "200", "WebhookView", ("401", "403", "404")),
    ("/v1/webhooks/{webhook_id}", "delete", "200", "WebhookView", ("401", "403", "404")),
    (
        "/v1/webhooks/{webhook_id}/deliveries",
        "get",
        "200",
        "DeliveryView[]",
        ("400", "401", "403", "404"),
    ),
    ("/v1/deployments", "get", "200", "Deployment[]", ("400", "401", "403")),
    ("/v1/deployments", "post", "202", "Deployment", ("400", "401", "403", "409")),
    ("/v1/deployments/{deployment_id}", "get", "200", "Deployment", ("401", "403", "404")),
    ("/v1/deployments/{deployment_id}", "put", "202", "Deployment", ("400", "404", "409")),
    ("/v1/deployments/{deployment_id}", "delete", "202", "Deployment", ("401", "404", "409")),
    ("/v1/fine-tuning", "get", "200", "FineTuningJobView[]", ("400", "401")),
    ("/v1/fine-tuning", "post", "201", "FineTuningJobView", ("400", "401", "403", "404", "429")),
    ("/v1/fine-tuning/{job_id}", "get", "200", "FineTuningJobView", ("401", "404")),
    ("/v1/fine-tuning/{job_id}/cancel", "post", "200", "FineTuningJobView", ("400", "404")),
    ("/v1/datasets", "get", "200", "DatasetView[]", ("400", "401")),
    ("/v1/datasets", "post", "201", "DatasetView", ("400", "401", "404", "413")),
    ("/v1/datasets/{dataset_id}", "get", "200", "DatasetView", ("401", "404")),
    ("/v1/datasets/{dataset_id}", "delete", "200", "DatasetView", ("401", "404")),
]


def _document(server: RunningServer) -> dict[str, Any]:
    reply = httpx.get(f"{server.root_url}/schema/openapi.json", timeout=30)
    assert reply.status_code == 200
    document: dict[str, Any] = reply.json()
    return document


def _schema(document: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    response = document["paths"][path][method]["responses"][status]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema


def _component(document: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith(REF), ref
    found: dict[str, Any] = document["components"]["schemas"][ref.removeprefix(REF)]
    return found


def test_every_management_operation_documents_its_response_and_errors(
    server: RunningServer,
) -> None:
    document = _document(server)
    for path, method, status, data, errors in OPERATIONS:
        where = f"{method.upper()} {path}"
        envelope = _component(document, _schema(document, path, method, status)["$ref"])
        assert {"data", "message"} <= set(envelope["required"]), where
        shown = envelope["properties"]["data"]
        if data.endswith("[]"):  # a page: data is a list, with the pagination beside it
            assert "pagination" in envelope["required"], where
            pagination = _component(document, envelope["properties"]["pagination"]["$ref"])
            assert set(pagination["required"]) == {"total", "limit", "offset", "hasMore"}
            assert shown["items"]["$ref"] == REF + data.removesuffix("[]"), where
        elif data.endswith("+"):  # a plain list
            assert shown["items"]["$ref"] == REF + data.removesuffix("+"), where
        else:
            assert shown["$ref"] == REF + data, where
        for error in errors:
            assert _schema(document, path, method, error)["$ref"] == REF + "ErrorBody", where


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Validator:
    """A validator for `schema` that resolves the document's `#/components/...` refs."""
    rooted = {**schema, "components": document["components"]}
    return jsonschema.Draft202012Validator(rooted)


def _check(
    document: dict[str, Any],
    reply: httpx.Response,
    path: str,
    method: str,
    kind: Any,
) -> dict[str, Any]:
    """The reply matches the documented schema, and decodes as `kind` with nothing left over."""
    status = str(reply.status_code)
    _validator(document, _schema(document, path, method, status)).validate(reply.json())
    decoded = msgspec.json.decode(reply.content, type=kind, strict=True)
    assert msgspec.to_builtins(decoded) == reply.json(), f"{method.upper()} {path}"
    body: dict[str, Any] = reply.json()
    return body


def test_real_responses_match_the_document_and_the_structs(server: RunningServer) -> None:
    document = _document(server)
    client = httpx.Client(base_url=server.base_url, headers=ADMIN_HEADERS, timeout=60)
    with client:
        made = client.post("/api-keys", json={"name": "schema-check", "tier": "free"})
        assert made.status_code == 201
        key = _check(document, made, "/v1/api-keys", "post", Item[CreatedKey])["data"]
        listed = client.get("/api-keys")
        _check(document, listed, "/v1/api-keys", "get", Page[KeyInfo])
        one = client.get(f"/api-keys/{key['id']}")
        _check(document, one, "/v1/api-keys/{key_id}", "get", Item[ApiKeyView])
        changed = client.put(f"/api-keys/{key['id']}", json={"budget": {"usd": "5"}})
        _check(document, changed, "/v1/api-keys/{key_id}", "put", Item[ApiKeyView])
        revoked = client.delete(f"/api-keys/{key['id']}")
        _check(document, revoked, "/v1/api-keys/{key_id}", "delete", Item[ApiKeyView])
        missing = client.get("/api-keys/no-such-key")
        assert missing.status_code == 404
        _check(document, missing, "/v1/api-keys/{key_id}", "get", ErrorBody)

        _check(document, client.get("/tiers"), "/v1/tiers", "get", Item[list[Tier]])
        live = client.get("/analytics/live")
        _check(document, live, "/v1/analytics/live", "get", Item[LiveSnapshot])

        hook = client.post(
            "/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["key.created"]}
        )
        assert hook.status_code == 201
        hook_id = _check(document, hook, "/v1/webhooks", "post", Item[CreatedWebhook])["data"]["id"]
        client.post("/api-keys", json={"name": "schema-check-2"})  # an event to deliver
        _check(document, client.get("/webhooks"), "/v1/webhooks", "get", Page[WebhookView])
        path = "/v1/webhooks/{webhook_id}"
        _check(document, client.get(f"/webhooks/{hook_id}"), path, "get", Item[WebhookView])
        deliveries = client.get(f"/webhooks/{hook_id}/deliveries")
        _check(document, deliveries, path + "/deliveries", "get", Page[DeliveryView])
        gone = client.delete(f"/webhooks/{hook_id}")
        _check(document, gone, path, "delete", Item[WebhookView])

        upload = client.post(
            "/files",
            files={"file": ("t.jsonl", b'{"messages": []}\nnot json\n')},
            data={"purpose": "fine-tune"},
        )
        assert upload.status_code == 200, upload.text
        made_set = client.post("/datasets", json={"name": "s", "fileId": upload.json()["id"]})
        assert made_set.status_code == 201, made_set.text
        dataset = _check(document, made_set, "/v1/datasets", "post", Item[DatasetView])["data"]
        assert dataset["status"] == "invalid"
        assert [e["line"] for e in dataset["errors"]] == [1, 2]  # no assistant; not JSON
        _check(document, client.get("/datasets"), "/v1/datasets", "get", Page[DatasetView])
        path = "/v1/datasets/{dataset_id}"
        one_set = client.get(f"/datasets/{dataset['id']}")
        _check(document, one_set, path, "get", Item[DatasetView])
        _check(
            document, client.delete(f"/datasets/{dataset['id']}"), path, "delete", Item[DatasetView]
        )
        _check(document, client.get(f"/datasets/{dataset['id']}"), path, "get", ErrorBody)
        jobs = client.get("/fine-tuning")
        _check(document, jobs, "/v1/fine-tuning", "get", Page[FineTuningJobView])
        refused = client.post("/fine-tuning", json={"model": "tiny", "datasetId": dataset["id"]})
        _check(document, refused, "/v1/fine-tuning", "post", ErrorBody)
        no_job = client.get("/fine-tuning/ftjob-none")
        _check(document, no_job, "/v1/fine-tuning/{job_id}", "get", ErrorBody)

        found = client.get("/deployments")
        page = _check(document, found, "/v1/deployments", "get", Page[Deployment])
        first = page["data"][0]["id"]
        path = "/v1/deployments/{deployment_id}"
        _check(document, client.get(f"/deployments/{first}"), path, "get", Item[Deployment])
