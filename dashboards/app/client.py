"""The dashboard's only way to data: the HTTP API, with a viewer token, errors turned into readable text."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["ApiError", "DashboardApi"]


class ApiError(Exception):
    """A request the page cannot answer; `str()` is a sentence an operator can act on."""


class DashboardApi:
    """Synchronous client shared by every session (created once in `app_hooks.on_server_loaded`).

    Synchronous on purpose: the API is local and answers in milliseconds, and a Bokeh callback that
    blocks for that long is simpler to reason about than one that interleaves with other events.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=f"{self.base_url}/api/v1", headers=headers, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def _get(self, path: str) -> Any:
        try:
            response = self._client.get(path)
        except httpx.HTTPError as exc:
            raise ApiError(
                f"The API at {self.base_url} did not answer ({type(exc).__name__}); is `sendense api` running?"
            ) from exc
        if response.status_code in (401, 403):
            raise ApiError(
                f"The API at {self.base_url} refused the dashboard's token (HTTP {response.status_code}); "
                "set SENDENSE_DASHBOARD_TOKEN to one of the API's viewer tokens."
            )
        if response.status_code == 404:
            raise ApiError(_detail(response) or f"Not found: {path}")
        if response.status_code >= 400:
            raise ApiError(f"The API answered HTTP {response.status_code} for {path}: {_detail(response)}")
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(f"The API answered {path} with something that is not JSON") from exc

    def machines(self) -> list[dict]:
        """The protection-flows table (GET /machines)."""
        return self._get("/machines")["machines"]

    def machine(self, vm_name: str) -> dict:
        """One machine's details, KPIs, trend and latest jobs (GET /machines/{vm_name})."""
        return self._get(f"/machines/{quote(vm_name, safe='')}")

    def history(self, job_id: str) -> dict:
        """A job's telemetry history: rolled_up, live_snapshots or none (GET /telemetry/history/{job_id})."""
        return self._get(f"/telemetry/history/{quote(job_id, safe='')}")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail") or body.get("message") or "")[:200] if isinstance(body, dict) else ""
