"""Error responses: every failure is JSON with a `detail` a person can act on; known conditions are never 500."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from pipeline.ingest.service import IngestError
from pipeline.outages import StoreUnavailable, describe_outage, is_outage

__all__ = ["EXCEPTION_HANDLERS", "bad_request", "decode_strict", "error_payload", "ingest_error", "unexpected_error"]

T = TypeVar("T")
log = logging.getLogger("sendense.api")

RETRY_AFTER = 5


def bad_request(detail: str) -> ValidationException:
    return ValidationException(detail)


def decode_strict(raw: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode a body strictly: "12" is not an int, unknown fields are refused, bounds apply.

    Litestar's own `data` parsing converts leniently, so bodies are decoded here instead. One leniency
    JSON Schema itself grants is kept: a number with an integral value (`1.0`, `1e9`) is an integer.
    Bodies nested deeper than msgspec allows are malformed JSON like any other (400), not a crash.
    """
    try:
        try:
            return decoder.decode(raw)
        except msgspec.ValidationError as exc:
            if "got `float`" not in str(exc):
                raise
            # Rare, so off the fast path: integral floats become ints, then the same strict rules apply.
            return msgspec.convert(_integral(msgspec.json.decode(raw)), decoder.type, strict=True)
    except msgspec.ValidationError as exc:
        raise bad_request(str(exc)) from exc
    except (msgspec.DecodeError, RecursionError) as exc:
        raise bad_request(f"body is not valid JSON: {exc}") from exc


def _integral(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= 2**63 else value
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def error_payload(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    """The body of every error answer (api/fastpath.py encodes the same one itself)."""
    return {"status_code": status, "detail": detail, **extra}


def _error(status: int, detail: str, headers: dict[str, str] | None = None, **extra) -> Response:
    return Response(error_payload(status, detail, **extra), status_code=status, headers=headers)


def ingest_error(exc: IngestError) -> tuple[int, str, dict[str, str] | None]:
    """An ingest refusal's status, detail and headers (the handler below and api/fastpath.py answer with them)."""
    return exc.status, exc.detail, {"Retry-After": str(exc.retry_after)} if exc.retry_after else None


def _ingest_error(_: Request, exc: IngestError) -> Response:
    return _error(*ingest_error(exc))


def _unavailable(detail: str, retry_after: int = RETRY_AFTER) -> Response:
    return _error(503, detail, {"Retry-After": str(retry_after)})


def _store_unavailable(_: Request, exc: StoreUnavailable) -> Response:
    return _unavailable(exc.detail, exc.retry_after)


def _validation_error(_: Request, exc: ValidationException) -> Response:
    # Litestar puts the field in `extra`; put it in `detail` too, so the message names it.
    problems = []
    for item in exc.extra or []:
        if isinstance(item, dict):
            key = item.get("key")
            message = item.get("message", "")
            problems.append(f"{key}: {message}" if key else message)
    detail = "; ".join(problems) if problems else exc.detail
    return _error(400, detail, extra=exc.extra)


def _http_error(_: Request, exc: HTTPException) -> Response:
    if exc.status_code >= 500:
        log.error("%d answered: %s", exc.status_code, exc.detail, exc_info=exc)
    return _error(
        exc.status_code,
        exc.detail,
        dict(exc.headers) if exc.headers else None,
        **({"extra": exc.extra} if exc.extra else {}),
    )


def unexpected_error(method: str, path: str, exc: Exception) -> tuple[int, str, dict[str, str] | None]:
    """A store outage anywhere is 503; anything else is a bug: logged with its traceback, then 500.
    Returns the status, the detail and the headers of the answer."""
    if is_outage(exc):
        return 503, describe_outage(exc), {"Retry-After": str(RETRY_AFTER)}
    log.error("unexpected error on %s %s", method, path, exc_info=exc)
    return 500, f"internal error ({type(exc).__name__}); it has been logged", None


def _unexpected(request: Request, exc: Exception) -> Response:
    status, detail, headers = unexpected_error(request.method, request.url.path, exc)
    return _error(status, detail, headers)


EXCEPTION_HANDLERS = {
    IngestError: _ingest_error,
    StoreUnavailable: _store_unavailable,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
