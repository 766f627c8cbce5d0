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
        "/v1/fine-tuning",
        "/v1/fine-tuning/{job_id}",
        "/v1/fine-tuning/{job_id}/cancel",
        "/v1/datasets",
        "/v1/datasets/{dataset_id}",
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
        ("/v1/fine-tuning", "post", "CreateFineTuningBody"),
        ("/v1/datasets", "post", "CreateDatasetBody"),
    ):
        content = paths[path][method]["requestBody"]["content"]["application/json"]
        assert content["schema"]["$ref"] == f"#/components/schemas/{kind}"
        assert kind in schemas
    upload = paths["/v1/datasets"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["$ref"] == "#/components/schemas/DatasetUpload"
    assert "messages" in schemas["ChatCompletionRequest"]["properties"]
    assert schemas["ChatCompletionRequest"]["properties"]["messages"]["items"]["$ref"] == (
        "#/components/schemas/ChatMessage"
    )
    assert "ChatMessage" in schemas


def test_openai_operations_document_their_answers(server: RunningServer) -> None:
    document = httpx.get(f"{server.root_url}/schema/openapi.json").json()
    paths, schemas = document["paths"], document["components"]["schemas"]

    def ref(kind: str) -> dict[str, str]:
        assert kind in schemas, kind
        return {"$ref": f"#/components/schemas/{kind}"}

    for path, method, answer, chunk in (
        (
            "/v1/chat/completions",
            "post",
            "CreateChatCompletionResponse",
            "ChatCompletionStreamResponse",
        ),
        ("/v1/completions", "post", "CreateCompletionResponse", "CreateCompletionResponse"),
        ("/v1/models/{target}", "post", "CreateCompletionResponse", "CreateCompletionResponse"),
        ("/v1/embeddings", "post", "CreateEmbeddingResponse", None),
        ("/v1/models", "get", "ListModelsResponse", None),
        ("/v1/models/{model_id}", "get", "Model", None),
        (
            "/chat/completions",
            "post",
            "CreateChatCompletionResponse",
            "ChatCompletionStreamResponse",
        ),
    ):
        responses = paths[path][method]["responses"]
        content = responses["200"]["content"]
        assert content["application/json"]["schema"] == ref(answer), path
        if chunk is None:
            assert "text/event-stream" not in content, path
        else:
            # Each event's `data` is one chunk (or an error) as JSON, or `[DONE]`.
            data = content["text/event-stream"]["schema"]["properties"]["data"]["anyOf"]
            assert data[0]["const"] == "[DONE]"
            assert data[1]["contentMediaType"] == "application/json"
            assert data[1]["contentSchema"]["anyOf"] == [ref(chunk), ref("ErrorResponse")], path
            assert "data:" in responses["200"]["description"]
        errors = [status for status in responses if status != "200"]
        assert "401" in errors, path
        for status in errors:
            assert responses[status]["content"]["application/json"]["schema"] == ref(
                "ErrorResponse"
            ), (path, status)
    assert {"404", "429", "503"} <= set(paths["/v1/chat/completions"]["post"]["responses"])
    # The shapes follow OpenAI's spec: the message's refusal, a chunk's nullable usage.
    message = schemas["ChatCompletionResponseMessage"]["properties"]
    assert {"role", "content", "refusal", "tool_calls"} <= set(message)
    model = schemas["Model"]["properties"]
    assert {"pricing", "context_length", "status", "requests_running"} <= set(model)
    assert set(schemas["OpenAIError"]["required"]) == {"message", "type", "param", "code"}
