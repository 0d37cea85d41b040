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
from litestar.dto import MsgspecDTO
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import (
    Components,
    Example,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    PathItem,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.typing import FieldDefinition

from api.errors import decode_strict
from api.schemas import CONTRACT_TYPES, Error
from pipeline.alerts.delivery.webhook import ATTEMPT_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER

__all__ = ["StrictBody", "errors", "openapi_config", "strict_union_body", "use_msgspec_schemas"]

T = TypeVar("T")

BEARER = "BearerToken"

_REASONS = {
    400: "The body, a path or a query parameter is invalid; `detail` names the field and the rule.",
    401: "No bearer token, or an unknown one (the answer carries `WWW-Authenticate: Bearer`).",
    403: (
        "The token's role may not do this: viewer tokens only read; creating jobs and sending telemetry needs "
        "an agent token; acknowledging, silencing, changing alert rules, registering machines and setting "
        "their RPO need an operator token."
    ),
    404: "No such job, machine, alert or silence.",
    409: "The job has already finished (or, creating one, its id is taken).",
    413: "The body is larger than this route takes.",
    503: "MySQL or InfluxDB does not answer; nothing was stored. Retry after `Retry-After` seconds.",
}
_EXAMPLES = {
    400: {"status_code": 400, "detail": "Expected `int`, got `str` - at `$.bytes_transferred`"},
    401: {"status_code": 401, "detail": "a bearer token is required (Authorization: Bearer <token>)"},
    403: {"status_code": 403, "detail": "agent tokens may not do this; it needs an operator token"},
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


class _UnionBody(StrictBody):
    """StrictBody of a union of Structs tagged on a field (Litestar's DTOs take a single model type)."""

    @classmethod
    def create_for_field_definition(cls, field_definition: FieldDefinition, handler_id: str, backend_cls=None) -> None:
        """Nothing to build: decoding (`decode_bytes`) and the schema (`create_openapi_schema`) are msgspec's."""


def strict_union_body(union: Any) -> type[StrictBody]:
    """The strict body DTO of a tagged union of Structs, for example `PUT /alert-rules`' overrides."""
    return type(f"StrictBody[{union}]", (_UnionBody,), {"model_type": union})


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Sendense Telemetry API",
        version="1.0.0",
        description=(
            "Backup-job telemetry: agents post updates, operators read jobs, machines and history.\n\n"
            "Every request but `/health/*` and this document needs `Authorization: Bearer <token>`: viewer "
            "tokens read; agent tokens also create jobs and send telemetry; operator tokens also acknowledge "
            "and silence alerts, change alert rules, register machines and set their RPO (403 otherwise). "
            "Updates are acknowledged only once durable (202 running, 200 terminal); 503 with `Retry-After` "
            "means nothing was stored. Every error body is `Error`. The `webhooks` section documents what "
            "the pipeline POSTs to a webhook receiver."
        ),
        path="/api/v1/schema",
        security=[{BEARER: []}],
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description=(
                        "A viewer token (read), an agent token (read, create jobs, send telemetry) or an "
                        "operator token (read, acknowledge, silence, change alert rules and machines)."
                    ),
                )
            }
        ),
    )


def use_msgspec_schemas(app: Litestar) -> None:
    """Build the document now, with the contract's component schemas generated by msgspec."""
    openapi = app.openapi_schema  # built once and cached: the document every request is served
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
        for operation in (path_item.get, path_item.put, path_item.post, path_item.delete):
            for response in (operation.responses or {}).values() if operation else ():
                for media in (getattr(response, "content", None) or {}).values():
                    union = unions.get(_members(media.schema))
                    if union is not None:
                        media.schema = union
            body = getattr(operation, "request_body", None)
            for media in (getattr(body, "content", None) or {}).values():
                union = unions.get(_members(media.schema))
                if union is not None:  # keep the body's examples beside msgspec's union
                    examples = getattr(media.schema, "examples", None)
                    media.schema = {**union, **({"examples": examples} if examples else {})}
    openapi.webhooks = {"alertNotification": _webhook()}


_WEBHOOK_BODY = "#/components/schemas/WebhookNotification"


def _webhook() -> PathItem:
    """The POST the pipeline sends a webhook receiver (OpenAPI 3.1 `webhooks`): its body is `WebhookNotification`."""
    text = Schema(type="string")  # type: ignore[arg-type]
    return PathItem(
        post=Operation(
            operation_id="alertNotification",
            tags=["alerts"],
            summary="A notification of an alert that fired or resolved",
            description=(
                "POSTed to `SENDENSE_ALERT_WEBHOOK_URL` once per transition (fired, resolved, escalated), "
                "from the outbox written with the alert's change: retried with back-off after a timeout "
                "(`SENDENSE_ALERT_WEBHOOK_TIMEOUT`), a connection error, a 3xx, 5xx, 408 or 429 (so a receiver "
                "may see one notification again: it drops a repeat by `idempotency_key`), given up only on "
                "another 4xx (recorded as refused in the alert's deliveries). The body is the same bytes on "
                "every attempt (docs/alerts.md)."
            ),
            security=[],
            parameters=[
                Parameter(
                    name=SIGNATURE_HEADER,
                    param_in="header",  # type: ignore[arg-type]
                    required=False,
                    schema=text,
                    description=(
                        "`sha256=` and the hex HMAC-SHA256 of the raw body with `SENDENSE_ALERT_WEBHOOK_SECRET` "
                        "(sent when a secret is set): the receiver computes it again and compares in constant time."
                    ),
                ),
                Parameter(
                    name=IDEMPOTENCY_HEADER,
                    param_in="header",  # type: ignore[arg-type]
                    required=True,
                    schema=text,
                    description="The body's `idempotency_key`, for receivers that de-duplicate by header.",
                ),
                Parameter(
                    name=ATTEMPT_HEADER,
                    param_in="header",  # type: ignore[arg-type]
                    required=True,
                    schema=text,
                    description="1 on the first delivery of this notification, then 2, 3 ... (not signed).",
                ),
            ],
            request_body=RequestBody(
                required=True,
                content={"application/json": OpenAPIMediaType(schema=Reference(ref=_WEBHOOK_BODY))},
            ),
            responses={
                "2XX": OpenAPIResponse(description="Received: the notification is marked sent."),
                "4XX": OpenAPIResponse(
                    description="Refused for good (not retried), except 408 and 429, which are retried."
                ),
                "5XX": OpenAPIResponse(
                    description="Retried after 5 s, 10 s, 20 s ... (at most `SENDENSE_ALERT_RETRY_MAX`).",
                    headers={
                        "Retry-After": OpenAPIHeader(
                            schema=text, description="Seconds: waited at least, up to `SENDENSE_ALERT_RETRY_MAX`."
                        )
                    },
                ),
            },
        )
    )


def _members(schema: Any) -> frozenset[str]:
    """The component names a union schema (Litestar's or msgspec's) is made of."""
    if isinstance(schema, dict):
        options = schema.get("anyOf") or schema.get("oneOf") or []
        return frozenset(o.get("$ref", "") for o in options)
    options = getattr(schema, "one_of", None) or getattr(schema, "any_of", None) or []
    return frozenset(getattr(o, "ref", "") for o in options)
