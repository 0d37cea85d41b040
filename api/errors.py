"""Error responses: every failure is JSON with a `detail` a person can act on."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import ValidationException

from pipeline.ingest.service import IngestError

__all__ = ["EXCEPTION_HANDLERS", "bad_request", "decode_strict"]

T = TypeVar("T")


def bad_request(detail: str) -> ValidationException:
    return ValidationException(detail)


def decode_strict(raw: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode a body strictly: "12" is not an int, unknown fields are refused, bounds apply.

    Litestar's own `data` parsing converts leniently, so bodies are decoded here instead.
    """
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise bad_request(str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise bad_request(f"body is not valid JSON: {exc}") from exc


def _ingest_error(_: Request, exc: IngestError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return Response({"status_code": exc.status, "detail": exc.detail}, status_code=exc.status, headers=headers)


def _validation_error(_: Request, exc: ValidationException) -> Response:
    # Litestar puts the field in `extra`; put it in `detail` too, so the message names it.
    problems = []
    for item in exc.extra or []:
        if isinstance(item, dict):
            key = item.get("key")
            message = item.get("message", "")
            problems.append(f"{key}: {message}" if key else message)
    detail = "; ".join(problems) if problems else exc.detail
    return Response({"status_code": 400, "detail": detail, "extra": exc.extra}, status_code=400)


EXCEPTION_HANDLERS = {IngestError: _ingest_error, ValidationException: _validation_error}
