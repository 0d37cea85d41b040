"""Async HTTP client for the telemetry API, retrying whatever an agent should not give up on."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Self
from urllib.parse import quote

import httpx

__all__ = ["RETRYABLE_STATUSES", "ApiError", "TelemetryClient", "parse_retry_after"]

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
"""Answers meaning "not now": the request was not acted on, so sending it again is safe."""

# Statuses that prove the server did not act on a request, so even a non-idempotent
# POST (a job created without a client-chosen id) may be sent again.
_NOT_PROCESSED = frozenset({429, 503})


class ApiError(Exception):
    """The API refused a request, or could not be reached after every attempt.

    `status` is the HTTP status of the last answer, or None when no answer ever arrived;
    `detail` is the server's explanation (Litestar's `detail` field when present);
    `attempts` is how many times the request was sent.
    """

    def __init__(self, status: int | None, detail: str, *, method: str = "", path: str = "", attempts: int = 1):
        self.status = status
        self.detail = detail
        self.method = method
        self.path = path
        self.attempts = attempts
        where = f"{method} {path}".strip()
        code = f" -> {status}" if status is not None else ""
        super().__init__(f"{where}{code}: {detail}" if where else detail)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP-date), or None if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _error_detail(response: httpx.Response) -> str:
    """Litestar errors look like {"status_code", "detail", "extra"}; fall back to the raw text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        detail = str(body["detail"])
        extra = body.get("extra")
        # Validation failures put the useful part (which field, why) in `extra`.
        if isinstance(extra, list) and extra:
            missing = [text for text in map(_extra_item, extra) if text not in detail]
            if missing:
                detail = f"{detail} ({'; '.join(missing)})"
        elif extra:
            detail = f"{detail} ({extra})"
        return detail
    text = response.text.strip()
    return text[:500] if text else response.reason_phrase or f"HTTP {response.status_code}"


def _extra_item(item: Any) -> str:
    """One entry of Litestar's `extra` list: {"key", "message", "source"} or anything else."""
    if not isinstance(item, dict):
        return str(item)
    message = str(item.get("message", item))
    return f"{item['key']}: {message}" if item.get("key") else message


class TelemetryClient:
    """The API as agents, the simulator and tests see it (use as `async with`)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        max_attempts: int = 8,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        # Injectable so tests can check the waits without spending them.
        self._sleep = sleep or asyncio.sleep
        self._jitter = random.Random()
        headers = {"Accept": "application/json", "User-Agent": "sendense-agent/0.1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    # -- API methods -------------------------------------------------------------------------

    async def create_backup(
        self,
        vm_name: str,
        backup_type: str,
        repository_id: str,
        *,
        job_type: str = "backup",
        backup_id: str | None = None,
        disks: Sequence[Mapping[str, int]] | None = None,
        machine: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Register a job (status pending) and return it as the API stored it."""
        body: dict[str, Any] = {
            "vm_name": vm_name,
            "backup_type": backup_type,
            "repository_id": repository_id,
            "job_type": job_type,
        }
        if backup_id is not None:
            body["backup_id"] = backup_id
        if disks is not None:
            body["disks"] = [dict(disk) for disk in disks]
        if machine is not None:
            body["machine"] = dict(machine)
        try:
            # With a client-chosen id a resend cannot create a second job, so every failure may be retried.
            response = await self._request("POST", "/api/v1/backups", json=body, idempotent=backup_id is not None)
        except ApiError as exc:
            # A retry after a lost answer meets our own job: that is success, not a conflict.
            if exc.status == 409 and exc.attempts > 1 and backup_id is not None:
                return await self.get_backup(backup_id)
            raise
        return self._json(response)

    async def list_backups(self, **filters: str | int | None) -> list[dict[str, Any]]:
        """Jobs matching the filters (status, vm_name, repository_id, limit), newest first."""
        params = {key: value for key, value in filters.items() if value is not None}
        response = await self._request("GET", "/api/v1/backups", params=params)
        return list(self._json(response).get("backups", []))

    async def get_backup(self, backup_id: str) -> dict[str, Any]:
        """One job by id."""
        return self._json(await self._request("GET", f"/api/v1/backups/{_seg(backup_id)}"))

    async def send_update(self, job_type: str, job_id: str, update: Mapping[str, Any]) -> httpx.Response:
        """Send one telemetry update; the response is 202 (queued) or 200 (terminal state committed)."""
        return await self._request("POST", f"/api/v1/telemetry/{_seg(job_type)}/{_seg(job_id)}", json=dict(update))

    async def send_batch(self, updates: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Send several updates (each with job_type and job_id); returns {"accepted", "rejected"}."""
        body = {"updates": [dict(update) for update in updates]}
        return self._json(await self._request("POST", "/api/v1/telemetry/batch", json=body))

    async def set_rpo(self, vm_name: str, rpo_seconds: int | None) -> dict[str, Any]:
        """Set a machine's own recovery-point objective (None: back to the default); an operator's write."""
        path = f"/api/v1/machines/{_seg(vm_name)}/rpo"
        return self._json(await self._request("PUT", path, json={"rpo_seconds": rpo_seconds}))

    async def history(self, job_id: str) -> dict[str, Any]:
        """A job's history; `data_source` says which: "rolled_up", "live_snapshots" or "none"."""
        return self._json(await self._request("GET", f"/api/v1/telemetry/history/{_seg(job_id)}"))

    # -- plumbing ----------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send with retries; return a 2xx response or raise ApiError."""
        last: ApiError | None = None
        for attempt in range(1, self.max_attempts + 1):
            retry_after: float | None = None
            try:
                response = await self._http.request(method, path, json=json, params=params)
            except httpx.TransportError as exc:
                last = ApiError(None, self._describe(exc), method=method, path=path, attempts=attempt)
                if not self._retryable_transport(exc, idempotent):
                    raise last from exc
            else:
                if response.is_success:
                    return response
                detail = _error_detail(response)
                if response.status_code in (401, 403):
                    hint = "the token was refused" if "Authorization" in self._http.headers else "no token was sent"
                    detail = f"{detail} ({hint}; agents need an agent token)"
                last = ApiError(response.status_code, detail, method=method, path=path, attempts=attempt)
                retryable = RETRYABLE_STATUSES if idempotent else _NOT_PROCESSED
                if response.status_code not in retryable:
                    raise last
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt < self.max_attempts:
                await self._sleep(self._delay(attempt, retry_after))
        assert last is not None
        raise ApiError(
            last.status,
            f"gave up after {self.max_attempts} attempts: {last.detail}",
            method=method,
            path=path,
            attempts=self.max_attempts,
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """The server's Retry-After if it gave one, else exponential backoff with jitter; both capped."""
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        # Jitter keeps a crowd of agents that failed together from retrying together.
        return ceiling * self._jitter.uniform(0.5, 1.0)

    @staticmethod
    def _retryable_transport(exc: httpx.TransportError, idempotent: bool) -> bool:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return True  # the request never left this process
        if not idempotent:
            return False
        return isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)

    def _describe(self, exc: httpx.TransportError) -> str:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            lowered = text.lower()
            if "refused" in lowered or "all connection attempts failed" in lowered:
                return f"API at {self.base_url} refused the connection; is `sendense api` running?"
            return f"could not connect to the API at {self.base_url} ({text}); is the URL right?"
        if isinstance(exc, httpx.TimeoutException):
            return f"the API at {self.base_url} did not answer within {self.timeout:g}s"
        return f"lost the connection to the API at {self.base_url} ({text})"

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise ApiError(
                response.status_code,
                f"expected JSON, got {response.text[:200]!r}",
                method=response.request.method,
                path=response.request.url.path,
            ) from None
        if not isinstance(body, dict):
            raise ApiError(response.status_code, f"expected a JSON object, got {type(body).__name__}")
        return body


def _seg(value: str) -> str:
    """One path segment, escaped so ids with odd characters cannot change the route."""
    return quote(str(value), safe="")
