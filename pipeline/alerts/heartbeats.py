"""HeartbeatStore: each pipeline process says every few seconds whether its stores answer (owns `pipeline_heartbeats`).

The pipeline_unhealthy rule reads them: a store unreachable, or a commit queue full, for longer than
its threshold in any live process. A process that stops beating is left out after `STALE` (a process
gone is not a store down); the evaluation cannot run at all while MySQL is down, which is why that case
is for Prometheus (docs/alerts.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.dialects.mysql import insert as mysql_insert

from pipeline.db.tables import pipeline_heartbeats

__all__ = ["STALE", "HeartbeatStore"]

STALE = timedelta(minutes=2)
"""A heartbeat older than this is ignored; one older than a day is deleted."""


class HeartbeatStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def beat(
        self,
        process: str,
        *,
        influx_failing_since: datetime | None = None,
        mysql_failing_since: datetime | None = None,
        queue_full_since: datetime | None = None,
        detail: str | None = None,
    ) -> None:
        """Record this process's view now (times naive UTC; None: that is fine)."""
        values = {
            "process": process[:255],
            "seen_at": func.utc_timestamp(6),
            "influx_failing_since": influx_failing_since,
            "mysql_failing_since": mysql_failing_since,
            "queue_full_since": queue_full_since,
            "detail": (detail or "")[:1000] or None,
        }
        stmt = mysql_insert(pipeline_heartbeats).values(values)
        with self.engine.begin() as conn:
            conn.execute(stmt.on_duplicate_key_update({k: stmt.inserted[k] for k in values if k != "process"}))

    def failing_since(self, now: datetime) -> tuple[dict[str, datetime | None], dict[str, str]]:
        """Per component (influxdb, mysql, commit_queue), the earliest time a live process saw it failing."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(pipeline_heartbeats).where(pipeline_heartbeats.c.seen_at >= now - STALE)).all()
            conn.execute(delete(pipeline_heartbeats).where(pipeline_heartbeats.c.seen_at < now - timedelta(days=1)))
            conn.commit()
        since: dict[str, datetime | None] = {}
        details: dict[str, str] = {}
        for component, column in (
            ("influxdb", "influx_failing_since"),
            ("mysql", "mysql_failing_since"),
            ("commit_queue", "queue_full_since"),
        ):
            failing = [r for r in rows if getattr(r, column) is not None]
            first = min(failing, key=lambda r: getattr(r, column), default=None)
            since[component] = None if first is None else getattr(first, column)
            if first is not None and first.detail:
                details[component] = f"{first.process}: {first.detail}"
        return since, details
