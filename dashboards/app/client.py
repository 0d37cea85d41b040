"""The dashboard's only way to data: the HTTP API, with a viewer token, errors turned into readable text."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["ApiError", "DashboardApi"]


class ApiError(Exception):
    """A request the page cannot answer; `str()` is a sentence an operator can act on."""


class DashboardApi:
    """Asynchronous client shared by every session (created once in `app_hooks.on_server_loaded`).

    Asynchronous so that a slow API answer holds up only the session that asked: the Bokeh server
    runs every session on one event loop, and a blocking call there froze them all.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(base_url=f"{self.base_url}/api/v1", headers=headers, timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            response = await self._client.get(path, params=params)
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

    async def machines(
        self, *, limit: int = 100, offset: int = 0, sort: str = "rpo", order: str = "desc", search: str = ""
    ) -> dict:
        """A page of the protection-flows table (GET /machines): {"machines": [...], "total": n}."""
        params: dict[str, Any] = {"limit": limit, "offset": offset, "sort": sort, "order": order}
        if search:
            params["search"] = search
        return await self._get("/machines", params)

    async def machine(self, vm_name: str) -> dict:
        """One machine's details, KPIs, trend, anomalies and RPO (GET /machines/{vm_name})."""
        return await self._get(f"/machines/{quote(vm_name, safe='')}")

    async def history(self, job_id: str) -> dict:
        """A job's telemetry history: rolled_up, live_snapshots or none (GET /telemetry/history/{job_id})."""
        return await self._get(f"/telemetry/history/{quote(job_id, safe='')}")

    async def disk_history(self, job_id: str) -> dict:
        """Each disk's speed curve of a job (GET /telemetry/history/{job_id}/disks)."""
        return await self._get(f"/telemetry/history/{quote(job_id, safe='')}/disks")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail") or body.get("message") or "")[:200] if isinstance(body, dict) else ""
