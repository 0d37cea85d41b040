"""The telemetry hot path, answered without Litestar's per-request machinery.

`POST /api/v1/telemetry/{job_type}/{job_id}` is most of the API's traffic, and Litestar's routing,
dependency injection, signature model, DTO and response objects cost more per request than decoding
the update and committing it (measured in bench/ingest_http.py: a bare Litestar endpoint answers about a
quarter as many requests per second as the same endpoint as a plain ASGI callable). `TelemetryFastPath`
sits in front of the app's ASGI handler and answers the requests it is sure of the same way the route
would: an authorised agent, a declared length within the route's limit, a body the strict decoder takes
and valid path parameters. Those go to the same `TelemetryIngest.submit` the route calls, and the answer
is the route's: 202/200 with the same bodies, ingest refusals (404, 409, 400, 503) with the error
handlers' bodies and headers.

Anything else (no or a wrong token, an oversized or chunked body, invalid JSON or fields, a bad path, a
trailing slash, another method) is handed to Litestar unchanged, with the body it already read replayed:
nothing has happened yet, so Litestar's answer (and its metrics) is exactly what it would have been.
tests/integration/test_fast_path.py sends every kind of request to both and compares the answers byte for
byte. `SENDENSE_API_FAST_PATH=0` turns it off.
"""

from __future__ import annotations

import logging
import re

import msgspec
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import BearerAuth
from api.errors import error_payload, ingest_error, unexpected_error
from api.routes.telemetry import MAX_UPDATE_BYTES, update_answer
from pipeline.ingest.models import JOB_ID_PATTERN, TelemetryUpdate
from pipeline.ingest.service import IngestError, TelemetryIngest
from pipeline.jobs.vocabulary import JOB_TYPES
from pipeline.metrics import FAST_PATH_ANSWERS

__all__ = ["TelemetryFastPath"]

log = logging.getLogger("sendense.api")

_PREFIX = "/api/v1/telemetry/"
_job_id = re.compile(JOB_ID_PATTERN)
_decoder = msgspec.json.Decoder(TelemetryUpdate)
_encode = msgspec.json.Encoder().encode
_JSON = (b"content-type", b"application/json")


class TelemetryFastPath:
    """ASGI: single telemetry updates answered here, everything else by `fallback` (the Litestar app's handler)."""

    def __init__(self, fallback: ASGIApp, auth: BearerAuth, services: object) -> None:
        self.fallback = fallback
        self.auth = auth
        self.services = services
        """Where the app's lifespan puts the ingest service (`services.ingest`), None before it starts."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        ingest: TelemetryIngest | None = getattr(self.services, "ingest", None)
        if scope["type"] != "http" or scope["method"] != "POST" or not path.startswith(_PREFIX) or ingest is None:
            await self.fallback(scope, receive, send)
            return
        job_type, _, job_id = path[len(_PREFIX) :].partition("/")
        if job_type not in JOB_TYPES or not _job_id.fullmatch(job_id) or not self._authorized(scope):
            await self.fallback(scope, receive, send)
            return
        length = _declared_length(scope)
        if length is None or length > MAX_UPDATE_BYTES:
            await self.fallback(scope, receive, send)
            return
        body, disconnected = await _read_body(receive, length)
        if disconnected:
            return
        try:
            update = _decoder.decode(body)
        except Exception:
            # Refused by Litestar with its own message (and counted there), from the same bytes.
            await self.fallback(scope, _replay(body, receive), send)
            return
        await self._submit(ingest, job_type, job_id, update, scope, send)

    def _authorized(self, scope: Scope) -> bool:
        if not self.auth.enabled:  # no tokens configured (loopback only): nothing to check, as in BearerAuth
            return True
        try:
            self.auth.authorize(scope)
        except HTTPException:
            return False
        return True

    async def _submit(
        self, ingest: TelemetryIngest, job_type: str, job_id: str, update: TelemetryUpdate, scope: Scope, send: Send
    ) -> None:
        FAST_PATH_ANSWERS.inc()
        try:
            status, body = update_answer(job_id, await ingest.submit(job_type, job_id, update))
        except IngestError as exc:
            await _refuse(send, *ingest_error(exc))
        except Exception as exc:
            await _refuse(send, *unexpected_error(scope["method"], scope["path"], exc))
        else:
            await _answer(send, status, _encode(body))


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) <= 12 else None
    return None


async def _read_body(receive: Receive, length: int) -> tuple[bytes, bool]:
    """The request's body (at most `length` bytes are expected); True if the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body already read once, then whatever the connection says next."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, status: int, detail: str, headers: dict[str, str] | None) -> None:
    """The error handlers' answer (api/errors.py): their body, their headers."""
    extra = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await _answer(send, status, _encode(error_payload(status, detail)), extra)


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    start_headers = [_JSON, (b"content-length", str(len(body)).encode()), *(headers or ())]
    try:
        await send({"type": "http.response.start", "status": status, "headers": start_headers})
        await send({"type": "http.response.body", "body": body})
    except OSError as exc:  # the client went away after its update was committed: nothing to tell it
        log.debug("answer to a telemetry update not delivered: %s", exc)
