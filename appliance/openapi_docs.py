"""Request and response bodies in the OpenAPI document for handlers that encode their own.

The OpenAI and key endpoints read the raw body and decode it with msgspec themselves (so
a bad body gets our error envelope naming the field), and answer bytes they encoded
(a Struct, an upstream's JSON, or a stream of events); Litestar therefore cannot see their
types. msgspec writes the JSON schemas, and each handler's operation points at its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.spec import (
    Components,
    Example,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType

REF = "#/components/schemas/{name}"
EVENT_STREAM = "text/event-stream"


def add_body_schemas(app: Litestar, kinds: list[type[msgspec.Struct]]) -> None:
    """Add every schema the bodies of `kinds` use to the app's OpenAPI components.

    Litestar fills the components from the types it sees when it builds the document, so
    ours join after that build (at startup, once every route is known).
    """
    _, schemas = msgspec.json.schema_components(kinds, ref_template=REF)
    components = app.openapi_schema.components
    assert isinstance(components, Components)
    found: dict[str, Any] = components.schemas
    found.update(schemas)


def _media(kind: type[msgspec.Struct]) -> OpenAPIMediaType:
    return OpenAPIMediaType(schema=_ref(kind))


def _ref(kind: type[msgspec.Struct]) -> Reference:
    return Reference(ref=REF.format(name=kind.__name__))


def event_schema(chunk: type[msgspec.Struct], error: type[msgspec.Struct] | None) -> Schema:
    """One server-sent event of a stream (OpenAPI 3.1 has a `text/event-stream` schema
    describe each event): its `data` is one `chunk` as JSON, an `error` as JSON when the
    stream fails after it began, or `[DONE]`, the last."""
    payload = Schema(any_of=[_ref(chunk), _ref(error)]) if error else _ref(chunk)
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["data"],
        description=f"One event: `data:` holds a {chunk.__name__} as JSON"
        + (f" (an {error.__name__} if the stream fails after it began)" if error else "")
        + ", or `[DONE]`, which ends the stream",
        properties={
            "data": Schema(
                any_of=[
                    Schema(type=OpenAPIType.STRING, const="[DONE]"),
                    Schema(
                        type=OpenAPIType.STRING,
                        content_media_type="application/json",
                        content_schema=payload,
                    ),
                ]
            )
        },
    )


def body(kind: type[msgspec.Struct]) -> type[Operation]:
    """An Operation class whose request body is `kind` as JSON."""
    return documented(body=kind)


def documented(
    *,
    body: type[msgspec.Struct] | None = None,
    examples: Mapping[str, Any] | None = None,
    answer: type[msgspec.Struct] | None = None,
    answer_description: str = "The answer",
    stream: type[msgspec.Struct] | None = None,
    errors: Mapping[str, str] | None = None,
    error: type[msgspec.Struct] | None = None,
    form: bool = False,
    upload: type[msgspec.Struct] | None = None,
) -> type[Operation]:
    """An Operation class with `body` as its JSON request body (with `examples`: name to
    body) and, when `answer` is
    given, its responses: 200 with `answer` as JSON (and, with `stream`, an event stream
    whose every `data:` line is one `stream`: `event_schema`), and `errors` (status: when) answering
    `error` as JSON; with `form`, the body is multipart/form-data with `body`'s fields as
    its parts; `upload` documents a multipart/form-data body beside the JSON one. Every
    type named here must also go to `add_body_schemas`."""

    @dataclass
    class Documented(Operation):
        def __post_init__(self) -> None:
            if body is not None:
                media = _media(body)
                if examples:
                    media.examples = {
                        name: Example(summary=name, value=value) for name, value in examples.items()
                    }
                kind = "multipart/form-data" if form else "application/json"
                content = {kind: media}
                if upload is not None:
                    content["multipart/form-data"] = _media(upload)
                self.request_body = RequestBody(content=content, required=True)
            if answer is None:
                return
            content = {"application/json": _media(answer)}
            description = answer_description
            if stream is not None:
                content[EVENT_STREAM] = OpenAPIMediaType(schema=event_schema(stream, error))
                description += (
                    f"; with `stream: true`, server-sent events: each `data:` line is one "
                    f"{stream.__name__} as JSON, an error after the stream began is one "
                    f"{error.__name__ if error else 'error'}, and `data: [DONE]` ends it"
                )
            responses: dict[str, OpenAPIResponse | Reference] = {
                "200": OpenAPIResponse(description=description, content=content)
            }
            for status, when in (errors or {}).items():
                responses[status] = OpenAPIResponse(
                    description=when,
                    content={"application/json": _media(error)} if error else None,
                )
            self.responses = responses

    return Documented
