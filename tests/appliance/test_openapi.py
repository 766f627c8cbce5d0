"""The OpenAPI document lists every endpoint, with the request bodies' types."""

from __future__ import annotations

import httpx
from conftest import RunningServer


def test_openapi_lists_every_endpoint_with_body_types(server: RunningServer) -> None:
    document = httpx.get(f"{server.root_url}/schema/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/api-keys",
        "/v1/api-keys/{key_id}",
        "/v1/analytics/live",
        "/v1/webhooks",
        "/v1/webhooks/{webhook_id}",
        "/v1/webhooks/{webhook_id}/deliveries",
        "/metrics",
    ):
        assert path in paths, path
    schemas = document["components"]["schemas"]
    for path, method, kind in (
        ("/v1/chat/completions", "post", "ChatCompletionRequest"),
        ("/v1/embeddings", "post", "EmbeddingRequest"),
        ("/v1/api-keys", "post", "CreateKeyBody"),
        ("/v1/api-keys/{key_id}", "put", "UpdateKeyBody"),
        ("/v1/webhooks", "post", "CreateWebhookBody"),
    ):
        content = paths[path][method]["requestBody"]["content"]["application/json"]
        assert content["schema"]["$ref"] == f"#/components/schemas/{kind}"
        assert kind in schemas
    assert "messages" in schemas["ChatCompletionRequest"]["properties"]
    assert schemas["ChatCompletionRequest"]["properties"]["messages"]["items"]["$ref"] == (
        "#/components/schemas/ChatMessage"
    )
    assert "ChatMessage" in schemas
