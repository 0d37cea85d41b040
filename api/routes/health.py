"""Liveness and readiness (readiness checks MySQL, InfluxDB and the ingest buffers)."""

from __future__ import annotations

from anyio import to_thread
from litestar import Controller, Response, get
from litestar.datastructures import State
from sqlalchemy import text

__all__ = ["HealthController"]


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/live")
    async def live(self) -> dict:
        """The process is up."""
        return {"status": "ok"}

    @get("/ready")
    async def ready(self, state: State) -> Response:
        """Both stores answer and no buffered write is failing; 503 with the reason otherwise."""
        checks: dict[str, dict] = {}

        def mysql() -> None:
            with state.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            await to_thread.run_sync(mysql)
            checks["mysql"] = {"ok": True}
        except Exception as exc:
            checks["mysql"] = {"ok": False, "error": str(exc)[:300]}
        influx_ok = await state.influx.ping()
        checks["influxdb"] = {"ok": influx_ok} if influx_ok else {"ok": False, "error": "no answer to /ping"}
        batcher = state.ingest.batcher
        checks["point_buffer"] = {
            "ok": batcher.healthy,
            "backlog": batcher.backlog,
            "written": batcher.written,
            "error": batcher.last_error,
            "failing_since": batcher.last_error_at if batcher.last_error else None,
        }
        coalescer = state.ingest.coalescer
        checks["state_buffer"] = {
            "ok": coalescer.last_error is None,
            "backlog": coalescer.backlog,
            "error": coalescer.last_error,
        }
        ok = all(c["ok"] for c in checks.values())
        return Response({"status": "ready" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)
