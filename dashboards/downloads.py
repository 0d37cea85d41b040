"""`/download/<kind>`: reports and CSVs from the API, fetched with the dashboard's token and streamed to the browser.

The browser has no API token (the dashboard reads the API on its behalf), so a download cannot be a
link to the API. This route, beside Bokeh's own, asks the API and passes the answer on a chunk at a time:
a CSV of a million jobs never sits in the dashboard's memory nor in the browser's. With users
configured it answers only a logged-in browser (the same signed cookie as every page).

An answer the API refuses comes back as a short HTML page whose `#download-error` paragraph says why;
the page's download buttons load the URL in a hidden frame and show that sentence
(`dashboards.app.views.downloads`).
"""

from __future__ import annotations

import logging
from html import escape

import httpx
from tornado.web import RequestHandler

from dashboards.app.download_links import DOWNLOAD_PREFIX, api_request
from dashboards.auth import DashboardLogin

__all__ = ["DOWNLOAD_TIMEOUT", "DownloadHandler", "download_patterns"]

log = logging.getLogger("sendense.dashboard")

DOWNLOAD_TIMEOUT = httpx.Timeout(10.0, read=60.0)
"""A 30-day estate PDF may take the API seconds to make before its first byte."""
_PASSED_ON = ("Content-Type", "Content-Disposition", "Content-Length")
_ERROR_PAGE = (
    '<!doctype html><html><head><meta charset="utf-8"><title>Download failed</title></head>'
    '<body><p id="download-error">{}</p></body></html>'
)


class DownloadHandler(RequestHandler):
    """GET /download/<kind>?…: one of `download_links.DOWNLOAD_KINDS`, streamed from the API."""

    def initialize(self, client: httpx.AsyncClient, base_url: str, login: DashboardLogin | None) -> None:
        self.client = client
        self.base_url = base_url
        self.login = login

    async def get(self, kind: str) -> None:
        if self.login is not None and self.login.user_of(self.request) is None:
            self._fail(403, "Your login has ended: reload the page and sign in again.")
            return
        query = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        try:
            request = api_request(kind, query)
        except ValueError as exc:
            self._fail(400, f"This download cannot be made: {exc}.")
            return
        try:
            async with self.client.stream("GET", request.path, params=request.params) as response:
                if response.status_code != 200:
                    await response.aread()
                    self._fail(*_refusal(response, self.base_url))
                    return
                self.set_header("Cache-Control", "no-store")
                for header in _PASSED_ON:
                    if header in response.headers:
                        self.set_header(header, response.headers[header])
                async for chunk in response.aiter_bytes():
                    self.write(chunk)
                    await self.flush()  # on to the browser now: memory holds one chunk, not the file
        except httpx.HTTPError as exc:
            if self._headers_written:
                log.warning("a download of %s broke off: %s", request.path, exc)  # the browser sees it cut short
                return
            self._fail(
                502, f"The API at {self.base_url} did not answer ({type(exc).__name__}); is `sendense api` running?"
            )

    def _fail(self, status: int, sentence: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(_ERROR_PAGE.format(escape(sentence)))


def _refusal(response: httpx.Response, base_url: str) -> tuple[int, str]:
    """(status, sentence) for an API answer other than 200."""
    detail = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("detail") or "")[:200]
    except ValueError:
        pass
    status = response.status_code
    if status in (401, 403):
        return 502, (
            f"The API at {base_url} refused the dashboard's token (HTTP {status}); set SENDENSE_DASHBOARD_TOKEN "
            "to one of the API's viewer tokens."
        )
    if status == 404 and detail in ("", "Not Found"):
        return 404, (
            f"The API at {base_url} does not offer this download ({response.request.url.path}: HTTP 404); "
            "it may be older than the dashboard (PDF reports need an API that makes them)."
        )
    if status == 404:
        return 404, f"Not found: {detail}."
    return (400 if status == 400 else 502), f"The API answered HTTP {status}: {detail or 'no reason given'}."


def download_patterns(base_url: str, token: str, login: DashboardLogin | None) -> list[tuple]:
    """The route for `bokeh.server.server.Server(extra_patterns=…)`, with its own client to the API."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx.AsyncClient(base_url=f"{base_url.rstrip('/')}/api/v1", headers=headers, timeout=DOWNLOAD_TIMEOUT)
    kwargs = {"client": client, "base_url": base_url.rstrip("/"), "login": login}
    return [(rf"{DOWNLOAD_PREFIX}([a-z]+\.(?:pdf|csv))", DownloadHandler, kwargs)]
