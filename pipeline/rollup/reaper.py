"""Marks running jobs that stopped reporting as failed, so that they too are rolled up."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select, update

from pipeline.db.tables import backup_disks, backup_jobs

__all__ = ["reap_stale_jobs"]

log = logging.getLogger(__name__)


def reap_stale_jobs(engine: Engine, stale_after: float) -> list[str]:
    """Fail every running job with no telemetry for `stale_after` seconds; returns their ids."""
    now = datetime.now(UTC).replace(tzinfo=None)
    cutoff = now - timedelta(seconds=stale_after)
    last_seen = func.coalesce(backup_jobs.c.last_telemetry_at, backup_jobs.c.started_at, backup_jobs.c.created_at)
    message = f"telemetry timeout: no telemetry for {stale_after:.0f} s"
    with engine.connect().execution_options(isolation_level="READ COMMITTED") as conn, conn.begin():
        stale = [
            row.id
            for row in conn.execute(
                select(backup_jobs.c.id)
                .where(backup_jobs.c.status == "running", last_seen < cutoff)
                .with_for_update(skip_locked=True)
            )
        ]
        if not stale:
            return []
        conn.execute(
            update(backup_jobs)
            .where(backup_jobs.c.id.in_(stale), backup_jobs.c.status == "running")
            .values(status="failed", error_message=message, completed_at=now)
        )
        conn.execute(
            update(backup_disks)
            .where(backup_disks.c.job_id.in_(stale), backup_disks.c.status.in_(("pending", "running")))
            .values(status="failed")
        )
    for job_id in stale:
        log.warning("job %s marked failed: %s", job_id, message)
    return stale
