"""InfluxDB v1 HTTP API access: `/write` and `/query`, with values passed as bound parameters."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import msgspec

from pipeline.settings import InfluxSettings

__all__ = ["AsyncInflux", "InfluxError", "InfluxUnavailable", "SyncInflux", "quote_ident", "validate_duration"]

_DURATION = re.compile(r"^(INF|(\d+(ns|u|µ|ms|s|m|h|d|w))+)$")


class InfluxError(Exception):
    """InfluxDB answered, but with an error (bad query, rejected points)."""


class InfluxUnavailable(InfluxError):
    """InfluxDB could not be reached or answered 5xx: worth retrying later."""


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes (database, retention policy, measurement names).

    Values never go through here: they are sent as bound parameters (`$name` with `params=`).
    """
    if any(ord(ch) < 32 for ch in name):
        raise ValueError(f"identifier {name!r} holds a control character")
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def validate_duration(value: str) -> str:
    """An InfluxQL duration literal (e.g. 30d, 52w, INF); raises ValueError otherwise."""
    if not _DURATION.match(value):
        raise ValueError(f"{value!r} is not an InfluxQL duration such as 30d, 12h, 52w or INF")
    return value


class _Requests:
    """What both clients share: URLs, authentication, error translation."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self.headers: dict[str, str] = {}
        self.auth: dict[str, str] = {}
        # v1 credentials go as HTTP basic authentication: InfluxDB 1.x does not read `u`/`p` from a
        # POSTed form (statements that change things are POSTed), and passwords stay out of URLs.
        self.basic_auth: httpx.BasicAuth | None = None
        if settings.token:
            self.headers["Authorization"] = f"Token {settings.token}"
        elif settings.username:
            self.basic_auth = httpx.BasicAuth(settings.username, settings.password)

    def write_params(self, rp: str | None) -> dict[str, str]:
        params = {"db": self.settings.database, "precision": "ns", **self.auth}
        if rp:
            params["rp"] = rp
        return params

    def query_params(self, q: str, bind: Mapping[str, Any] | None, epoch: str | None, db: bool) -> dict:
        params: dict[str, str] = {"q": q, **self.auth}
        if db:
            params["db"] = self.settings.database
        if bind:
            params["params"] = json.dumps(bind)
        if epoch:
            params["epoch"] = epoch
        return params

    def unreachable(self, exc: Exception) -> InfluxUnavailable:
        return InfluxUnavailable(
            f"InfluxDB at {self.base} could not be reached ({type(exc).__name__}: {exc}); is it running? "
            "(bash infra/influxdb.sh start)"
        )

    def check(self, response: httpx.Response, what: str) -> None:
        if response.status_code >= 500:
            raise InfluxUnavailable(f"InfluxDB {what} failed with {response.status_code}: {response.text[:300]}")
        if response.status_code >= 400:
            raise InfluxError(f"InfluxDB rejected the {what} ({response.status_code}): {response.text[:300]}")

    @staticmethod
    def results(body: dict) -> list[dict]:
        if "error" in body:
            raise InfluxError(f"InfluxDB query error: {body['error']}")
        results = body.get("results", [])
        for result in results:
            if "error" in result:
                raise InfluxError(f"InfluxDB query error: {result['error']}")
        return results


def _is_write_statement(q: str) -> bool:
    head = q.lstrip().split(None, 1)[0].upper() if q.strip() else ""
    return head in {"CREATE", "DROP", "ALTER", "DELETE", "GRANT", "REVOKE", "KILL"}


class SyncInflux(_Requests):
    """Blocking client, for the scheduler and command-line tools."""

    def __init__(self, settings: InfluxSettings) -> None:
        super().__init__(settings)
        self.http = httpx.Client(
            base_url=self.base, timeout=settings.timeout, headers=self.headers, auth=self.basic_auth
        )

    def close(self) -> None:
        self.http.close()

    def ping(self) -> bool:
        try:
            return self.http.get("/ping").status_code == 204
        except httpx.HTTPError:
            return False

    def write(self, body: bytes | str, rp: str | None = None) -> None:
        try:
            response = self.http.post("/write", params=self.write_params(rp), content=body)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from exc
        self.check(response, "write")

    def query(
        self, q: str, bind: Mapping[str, Any] | None = None, *, epoch: str | None = "ms", db: bool = True
    ) -> list[dict]:
        """Run InfluxQL; statements that change data are POSTed, as the v1 API requires."""
        params = self.query_params(q, bind, epoch, db)
        try:
            if _is_write_statement(q):
                response = self.http.post("/query", data=params)
            else:
                response = self.http.get("/query", params=params)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from exc
        self.check(response, "query")
        return self.results(response.json())

    def query_chunks(
        self, q: str, bind: Mapping[str, Any] | None = None, *, epoch: str = "ms", chunk_size: int = 10000
    ) -> Iterator[dict]:
        """Stream a large SELECT as InfluxDB's chunked JSON: one series chunk at a time, bounded memory."""
        params = self.query_params(q, bind, epoch, True) | {"chunked": "true", "chunk_size": str(chunk_size)}
        try:
            with self.http.stream("GET", "/query", params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    self.check(response, "query")
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    for result in self.results(msgspec.json.decode(line)):
                        yield from result.get("series", [])
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from exc


class AsyncInflux(_Requests):
    """Non-blocking client, for the API process."""

    def __init__(self, settings: InfluxSettings, *, max_connections: int = 16) -> None:
        super().__init__(settings)
        self.http = httpx.AsyncClient(
            base_url=self.base,
            timeout=settings.timeout,
            headers=self.headers,
            auth=self.basic_auth,
            limits=httpx.Limits(max_connections=max_connections),
        )
        # Writes (every group commit's) go to a transport of their own with a request built from parts
        # made once: the client's per-request work (URL merging, parameter encoding, the auth and
        # redirect flows) cost about as much as the rest of the write.
        self._writes = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=max_connections))
        self._write_urls: dict[str | None, httpx.URL] = {}
        self._write_headers = {"Content-Type": "text/plain; charset=utf-8", **self.headers}
        if self.basic_auth is not None:
            probe = next(self.basic_auth.auth_flow(httpx.Request("POST", self.base)))
            self._write_headers["Authorization"] = probe.headers["Authorization"]
        self._write_timeout = httpx.Timeout(settings.timeout).as_dict()

    async def aclose(self) -> None:
        await self.http.aclose()
        await self._writes.aclose()

    async def ping(self) -> bool:
        try:
            return (await self.http.get("/ping", timeout=2.0)).status_code == 204
        except httpx.HTTPError:
            return False

    async def write(self, body: bytes | str, rp: str | None = None) -> None:
        url = self._write_urls.get(rp)
        if url is None:
            url = self._write_urls[rp] = httpx.URL(f"{self.base}/write", params=self.write_params(rp))
        request = httpx.Request(
            "POST", url, content=body, headers=self._write_headers, extensions={"timeout": self._write_timeout}
        )
        try:
            response = await self._writes.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from exc
        self.check(response, "write")

    async def query(
        self, q: str, bind: Mapping[str, Any] | None = None, *, epoch: str | None = "ms", db: bool = True
    ) -> list[dict]:
        params = self.query_params(q, bind, epoch, db)
        try:
            response = await self.http.get("/query", params=params)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from exc
        self.check(response, "query")
        return self.results(response.json())
