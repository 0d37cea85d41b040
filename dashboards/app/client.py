"""The dashboard's only way to data: the HTTP API, read with a viewer token, errors turned into readable text.

Acknowledgements and silences (a logged-in operator's) are the only writes, sent with the operator token.
"""

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

    def __init__(self, base_url: str, token: str, *, operator_token: str = "", timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(base_url=f"{self.base_url}/api/v1", headers=headers, timeout=timeout)
        self._operator = {"Authorization": f"Bearer {operator_token}"} if operator_token else None

    @property
    def can_write(self) -> bool:
        """Whether an operator token is configured (SENDENSE_DASHBOARD_OPERATOR_TOKEN)."""
        return self._operator is not None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return await self._call("GET", path, params=params)

    async def _write(self, method: str, path: str, body: dict[str, Any]) -> Any:
        if self._operator is None:
            raise ApiError("The dashboard has no operator token: set SENDENSE_DASHBOARD_OPERATOR_TOKEN.")
        return await self._call(method, path, json=body, headers=self._operator)

    async def _call(self, method: str, path: str, **request: Any) -> Any:
        write = "headers" in request  # only writes carry their own (the operator's) token
        try:
            response = await self._client.request(method, path, **request)
        except httpx.HTTPError as exc:
            raise ApiError(
                f"The API at {self.base_url} did not answer ({type(exc).__name__}); is `sendense api` running?"
            ) from exc
        if response.status_code in (401, 403) and write:
            raise ApiError(
                f"The API at {self.base_url} refused the dashboard's operator token (HTTP {response.status_code}); "
                "set SENDENSE_DASHBOARD_OPERATOR_TOKEN to one of the API's operator tokens (SENDENSE_OPERATOR_TOKENS)."
            )
        if response.status_code in (401, 403):
            raise ApiError(
                f"The API at {self.base_url} refused the dashboard's token (HTTP {response.status_code}); "
                "set SENDENSE_DASHBOARD_TOKEN to one of the API's viewer tokens."
            )
        if response.status_code == 400 and write:
            raise ApiError(f"The API refused it: {_detail(response)}")
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

    async def history(self, job_id: str, since: str | None = None) -> dict:
        """A job's telemetry history: rolled_up, live_snapshots or none (GET /telemetry/history/{job_id});
        with `since` (a live answer's cursor) a live answer holds only the points after it."""
        params = {"since": since} if since else None
        return await self._get(f"/telemetry/history/{quote(job_id, safe='')}", params)

    async def disk_history(self, job_id: str, since: str | None = None) -> dict:
        """Each disk's speed curve of a job (GET /telemetry/history/{job_id}/disks); with `since` (a live
        answer's cursor) a live answer holds only each disk's points after it."""
        params = {"since": since} if since else None
        return await self._get(f"/telemetry/history/{quote(job_id, safe='')}/disks", params)

    async def timeline(self, start: str, end: str, repository: str | None = None) -> dict:
        """Every job of [start, end) as a bar, with the running jobs and summed speed (GET /reports/timeline)."""
        params = {"from": start, "to": end}
        if repository:
            params["repository"] = repository
        return await self._get("/reports/timeline", params)

    async def grid(self, *, days: int = 30, limit: int = 50, offset: int = 0, search: str = "") -> dict:
        """A page of the VM × day grid (GET /reports/grid): {"days", "machines": [{vm_name, cells}], "total"}."""
        params: dict[str, Any] = {"days": days, "limit": limit, "offset": offset}
        if search:
            params["search"] = search
        return await self._get("/reports/grid", params)

    async def alerts(
        self,
        *,
        state: str | None = None,
        severity: str | None = None,
        vm_name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> dict:
        """A page of alerts, firing first, then critical, warning, info (GET /alerts):
        {"alerts": [...], "total": n, "firing": {"critical": n, "warning": n, "info": n}}."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        for name, value in (("state", state), ("severity", severity), ("vm_name", vm_name)):
            if value:
                params[name] = value
        return await self._get("/alerts", params)

    async def acknowledge(self, alert_id: int, by: str, comment: str) -> dict:
        """Acknowledge an alert in `by`'s name (POST /alerts/{id}/acknowledge, operator token): the alert."""
        return await self._write("POST", f"/alerts/{int(alert_id)}/acknowledge", {"by": by, "comment": comment})

    async def silence(self, body: dict[str, Any]) -> dict:
        """Silence a machine and/or a rule (POST /silences, operator token): the silence."""
        return await self._write("POST", "/silences", body)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail") or body.get("message") or "")[:200] if isinstance(body, dict) else ""
