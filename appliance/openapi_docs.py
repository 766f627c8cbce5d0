"""Request bodies in the OpenAPI document for handlers that decode their own bodies.

The OpenAI and key endpoints read the raw body and decode it with msgspec themselves (so
a bad body gets our error envelope naming the field); Litestar therefore cannot see their
types. msgspec writes the JSON schemas, and each handler's operation points at its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.spec import Components, OpenAPIMediaType, Operation, Reference, RequestBody

REF = "#/components/schemas/{name}"


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


def body(kind: type[msgspec.Struct]) -> type[Operation]:
    """An Operation class whose request body is `kind` as JSON."""

    @dataclass
    class WithBody(Operation):
        def __post_init__(self) -> None:
            reference = Reference(ref=REF.format(name=kind.__name__))
            self.request_body = RequestBody(
                content={"application/json": OpenAPIMediaType(schema=reference)}, required=True
            )

    return WithBody
