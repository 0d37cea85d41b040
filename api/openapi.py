"""The OpenAPI side of the typed edge: strict request bodies, documented errors, msgspec's own schemas.

Litestar documents routes, parameters and responses; its schemas of msgspec Structs lose bounds on
optional fields (`int | None` with `ge=0` comes out without its minimum) and it writes integer bounds
as floats. So the component schemas of the contract's bodies are replaced by what `msgspec.json`
generates from the very types that decode and encode them: the document says what the code does.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.dto import MsgspecDTO
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components, Example, SecurityScheme
from litestar.typing import FieldDefinition

from api.errors import decode_strict
from api.schemas import CONTRACT_TYPES, Error

__all__ = ["StrictBody", "errors", "openapi_config", "use_msgspec_schemas"]

T = TypeVar("T")

BEARER = "BearerToken"

_REASONS = {
    400: "The body, a path or a query parameter is invalid; `detail` names the field and the rule.",
    401: "No bearer token, or an unknown one (the answer carries `WWW-Authenticate: Bearer`).",
    403: "A viewer token on a route that writes: it needs an agent token.",
    404: "No such job or machine.",
    409: "The job has already finished (or, creating one, its id is taken).",
    413: "The body is larger than this route takes.",
    503: "MySQL or InfluxDB does not answer; nothing was stored. Retry after `Retry-After` seconds.",
}
_EXAMPLES = {
    400: {"status_code": 400, "detail": "Expected `int`, got `str` - at `$.bytes_transferred`"},
    401: {"status_code": 401, "detail": "a bearer token is required (Authorization: Bearer <token>)"},
    403: {"status_code": 403, "detail": "viewer tokens may only read; this needs an agent token"},
    404: {"status_code": 404, "detail": "job 'backup-vm-1' does not exist"},
    409: {"status_code": 409, "detail": "job 'backup-vm-1' has already finished (completed)"},
    413: {"status_code": 413, "detail": "Request Entity Too Large"},
    503: {"status_code": 503, "detail": "InfluxDB at http://127.0.0.1:8086 does not answer"},
}


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """Response specs of the error statuses a route answers, each with the one error body shape."""
    return {
        code: ResponseSpec(
            data_container=Error,
            description=_REASONS[code],
            examples=[Example(summary=_REASONS[code].split(";")[0].split(".")[0], value=_EXAMPLES[code])],
        )
        for code in codes
    }


class StrictBody(MsgspecDTO[T], Generic[T]):
    """A request body decoded strictly by msgspec ("12" is not an int, unknown fields are refused,
    bounds apply), yet declared as the handler's `data`, so that the document shows it.

    Litestar's own decoding of `data` converts leniently; this DTO hands the raw bytes to a
    `msgspec.json.Decoder` of the declared Struct instead. Its schema is the Struct's own component.
    """

    _decoders: dict[type, msgspec.json.Decoder] = {}

    @classmethod
    def create_openapi_schema(cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any) -> Any:
        return schema_creator.for_field_definition(
            FieldDefinition.from_annotation(cls.model_type, kwarg_definition=field_definition.kwarg_definition)
        )

    @classmethod
    def decoder(cls) -> msgspec.json.Decoder:
        decoder = cls._decoders.get(cls.model_type)
        if decoder is None:
            decoder = cls._decoders[cls.model_type] = msgspec.json.Decoder(cls.model_type)
        return decoder

    def decode_bytes(self, value: bytes) -> Any:
        return decode_strict(value, self.decoder())


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Sendense Telemetry API",
        version="1.0.0",
        description=(
            "Backup-job telemetry: agents post updates, operators read jobs, machines and history.\n\n"
            "Every request but `/health/*` and this document needs `Authorization: Bearer <token>`: agent "
            "tokens read and write, viewer tokens only read. Updates are acknowledged only once durable "
            "(202 running, 200 terminal); 503 with `Retry-After` means nothing was stored. Every error body "
            "is `Error`."
        ),
        path="/api/v1/schema",
        security=[{BEARER: []}],
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An agent token (read and write) or a viewer token (read only).",
                )
            }
        ),
    )


def use_msgspec_schemas(app: Litestar) -> None:
    """Build the document now, with the contract's component schemas generated by msgspec."""
    openapi = app.plugins.get(OpenAPIPlugin).provide_openapi()
    refs, components = msgspec.json.schema_components(CONTRACT_TYPES, ref_template="#/components/schemas/{name}")
    schemas = openapi.components.schemas
    missing = sorted(set(schemas) - set(components))
    if missing:  # a Struct the routes use but CONTRACT_TYPES forgot: its schema would be Litestar's
        raise RuntimeError(f"api.schemas.CONTRACT_TYPES lacks {', '.join(missing)}")
    schemas.clear()
    schemas.update(dict(sorted(components.items())))
    # Litestar writes a union of Structs as a bare `oneOf`; msgspec's names the tag (`discriminator`).
    unions = {_members(ref): ref for ref in refs if "discriminator" in ref}
    for path_item in openapi.paths.values():
        for operation in (path_item.get, path_item.put, path_item.post):
            for response in (operation.responses or {}).values() if operation else ():
                for media in (getattr(response, "content", None) or {}).values():
                    union = unions.get(_members(media.schema))
                    if union is not None:
                        media.schema = union


def _members(schema: Any) -> frozenset[str]:
    """The component names a union schema (Litestar's or msgspec's) is made of."""
    if isinstance(schema, dict):
        options = schema.get("anyOf") or schema.get("oneOf") or []
        return frozenset(o.get("$ref", "") for o in options)
    options = getattr(schema, "one_of", None) or getattr(schema, "any_of", None) or []
    return frozenset(getattr(o, "ref", "") for o in options)
