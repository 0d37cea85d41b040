"""Liveness and readiness (readiness checks MySQL, InfluxDB and this process's group commits)."""

from __future__ import annotations

from anyio import to_thread
from litestar import Controller, Response, get
from litestar.openapi import ResponseSpec
from sqlalchemy import Engine, text

from api.schemas import Liveness, Readiness, to_body
from pipeline.ingest.service import TelemetryIngest
from pipeline.read.jobs import rollup_backlog
from pipeline.reconcile.store import DriftState
from pipeline.tsdb.influx import AsyncInflux

__all__ = ["HealthController"]


def _rollup_state(engine: Engine) -> tuple[dict, dict]:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    backlog = rollup_backlog(engine)
    backlog.pop("running")
    return backlog, DriftState(engine).read()


class HealthController(Controller):
    path = "/health"
    tags = ["health"]
    security = [{}]  # open: load balancers and orchestrators probe without a token

    @get("/live", operation_id="live")
    async def live(self) -> Liveness:
        """The process is up."""
        return Liveness("ok")

    @get(
        "/ready",
        operation_id="ready",
        responses={503: ResponseSpec(Readiness, description="A store does not answer; `checks` say which.")},
    )
    async def ready(self, engine: Engine, influx: AsyncInflux, ingest: TelemetryIngest) -> Response[Readiness]:
        """Both stores answer and group commits succeed; 503 with the reason otherwise.

        `rollup` reports the scheduler's backlog and the jobs set aside after failed rollups, `summary` the
        jobs changed outside the job store not reconciled yet (both informational: they do not make this
        process unready)."""
        checks: dict[str, dict] = {}
        try:
            rollup, drift = await to_thread.run_sync(_rollup_state, engine)
            checks["mysql"] = {"ok": True}
            checks["rollup"] = {"ok": True, **rollup}
            checks["summary"] = {"ok": True, **drift}
        except Exception as exc:
            checks["mysql"] = {"ok": False, "error": str(exc)[:300]}
        influx_ok = await influx.ping()
        checks["influxdb"] = {"ok": influx_ok} if influx_ok else {"ok": False, "error": "no answer to /ping"}
        committer = ingest.committer
        stats = committer.stats

        def p99_ms(samples) -> float | None:
            ordered = sorted(samples)
            return round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 2) if ordered else None

        checks["group_commit"] = {
            # Informational: a failing commit already answers 503; the store checks above decide readiness.
            "ok": True,
            "queued": committer.queued,
            "inflight": committer.inflight,
            "commits": stats.commits,
            "updates": stats.updates,
            "points_written": stats.points_written,
            "failed_commits": stats.failed_commits,
            # Over the last 1,000 commits: the whole commit, its InfluxDB write, its MySQL transaction.
            "p99_ms": p99_ms(stats.commit_seconds),
            "influx_p99_ms": p99_ms(stats.influx_seconds),
            "mysql_p99_ms": p99_ms(stats.mysql_seconds),
            "error": stats.last_error,
            "failing_since": stats.last_error_at if stats.last_error else None,
        }
        ok = all(c["ok"] for c in checks.values())
        body = to_body({"status": "ready" if ok else "unavailable", "checks": checks}, Readiness)
        return Response(body, status_code=200 if ok else 503)
