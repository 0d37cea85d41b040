"""Reading backup jobs: one job, filtered lists, and the JSON view the API serves."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, func, select, text

from pipeline.clock import aware
from pipeline.db.tables import backup_disks, backup_jobs
from pipeline.jobs.vocabulary import ACTIVE_STATUSES, TERMINAL_STATUSES

__all__ = ["rollup_backlog", "anomalies_of", "duration_seconds", "get_job", "job_view", "list_jobs", "rollup_view"]

MAX_LIST = 1000


def duration_seconds(row: Row | Any, now: datetime | None = None) -> float | None:
    """Seconds from start (or creation) to completion, or so far for a running job; on one clock.

    `started_at` and `completed_at` are the agent's timestamps (its first and last update). A running
    job's time so far is the agent's span up to its last update plus the server's time since it heard
    that update: an agent whose clock is behind, or that sends late, gets neither hours added nor taken.
    """
    start = row.started_at or (row.created_at if row.completed_at else None)
    if start is None:
        return None
    end = row.completed_at
    if end is None and row.status == "running" and now is not None:
        last, seen = getattr(row, "last_telemetry_at", None), getattr(row, "last_seen_at", None)
        end = now if last is None or seen is None else last + max(now - seen, timedelta(0))
    if end is None:
        return None
    return round(max((end - start).total_seconds(), 0.0), 3)


def job_view(row: Row, disks: Iterable[Row] = (), now: datetime | None = None) -> dict:
    """The job as the API and the job sheet's frontend read it (`type` is the backup type)."""
    return {
        "backup_id": row.id,
        "vm_name": row.vm_name,
        "repository_id": row.repository_id,
        "type": row.backup_type,
        "backup_type": row.backup_type,
        "job_type": row.job_type,
        "status": row.status,
        "created_at": aware(row.created_at),
        "started_at": aware(row.started_at),
        "completed_at": aware(row.completed_at),
        "duration_seconds": duration_seconds(row, now),
        "bytes_transferred": row.bytes_transferred,
        "total_bytes": row.total_bytes,
        "transfer_speed_bps": row.transfer_speed_bps,
        "progress_percent": float(row.progress_percent),
        "current_phase": row.current_phase,
        "last_telemetry_at": aware(row.last_telemetry_at),
        "last_seen_at": aware(row.last_seen_at),
        "error_message": row.error_message,
        "avg_speed_bps": row.avg_speed_bps,
        "has_performance_metrics": row.rolled_up_at is not None,
        "rollup": rollup_view(row),
        "anomalies": anomalies_of(row.anomalies),
        "disks": [
            {
                "disk_index": d.disk_index,
                "size_bytes": d.size_bytes,
                "bytes_transferred": d.bytes_transferred,
                "progress_percent": float(d.progress_percent),
                "status": d.status,
            }
            for d in disks
        ],
    }


def rollup_view(row: Row) -> dict:
    """Where the job's rollup stands: done, waiting, retrying after failures, or set aside (failed)."""
    if row.rolled_up_at is not None:
        state = "done"
    elif row.rollup_failed_at is not None:
        state = "failed"
    elif row.rollup_attempts:
        state = "retrying"
    elif row.status in TERMINAL_STATUSES:
        state = "waiting"
    else:
        state = "not_finished"
    return {
        "state": state,
        "rolled_up_at": aware(row.rolled_up_at),
        "attempts": row.rollup_attempts,
        "last_error": row.rollup_last_error,
        "next_attempt_at": aware(row.rollup_next_attempt_at),
        "failed_at": aware(row.rollup_failed_at),
    }


# performance_metrics stays in the database (up to 8 KB a job); only its anomaly flags come along.
_JOB_COLUMNS = [
    *(c for c in backup_jobs.c if c.name != "performance_metrics"),
    func.json_extract(backup_jobs.c.performance_metrics, "$.anomalies").label("anomalies"),
]


def anomalies_of(raw: str | list | None) -> list[dict]:
    """The anomaly flags of a rolled-up job (JSON text from the database, or already decoded)."""
    if raw is None:
        return []
    return json.loads(raw) if isinstance(raw, str | bytes) else list(raw)


def _disks_by_job(conn: Connection, job_ids: list[str]) -> dict[str, list[Row]]:
    if not job_ids:
        return {}
    rows = conn.execute(
        select(backup_disks)
        .where(backup_disks.c.job_id.in_(bindparam("ids", expanding=True)))
        .order_by(backup_disks.c.job_id, backup_disks.c.disk_index),
        {"ids": job_ids},
    )
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row.job_id, []).append(row)
    return grouped


def get_job(engine: Engine, job_id: str) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(select(*_JOB_COLUMNS).where(backup_jobs.c.id == job_id)).first()
        if row is None:
            return None
        disks = _disks_by_job(conn, [job_id]).get(job_id, [])
    return job_view(row, disks, datetime.now(UTC).replace(tzinfo=None))


def list_jobs(
    engine: Engine,
    *,
    vm_name: str | None = None,
    repository_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict:
    """Jobs newest first, filtered; `total` counts every match, not just this page."""
    conditions = []
    if vm_name is not None:
        conditions.append(backup_jobs.c.vm_name == vm_name)
    if repository_id is not None:
        conditions.append(backup_jobs.c.repository_id == repository_id)
    if status is not None:
        conditions.append(backup_jobs.c.status == status)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(backup_jobs).where(*conditions)).scalar_one()
        rows = conn.execute(
            select(*_JOB_COLUMNS)
            .where(*conditions)
            .order_by(backup_jobs.c.created_at.desc(), backup_jobs.c.id.desc())
            .limit(min(limit, MAX_LIST))
            .offset(offset)
        ).all()
        disks = _disks_by_job(conn, [r.id for r in rows])
    now = datetime.now(UTC).replace(tzinfo=None)
    return {"backups": [job_view(r, disks.get(r.id, []), now) for r in rows], "total": total}


# One query: jobs running, finished jobs waiting for their rollup, set aside, and purges not finished.
_BACKLOG = text(
    "SELECT "
    "(SELECT COUNT(*) FROM backup_jobs WHERE status IN :active) AS running, "
    "(SELECT COUNT(*) FROM backup_jobs WHERE status IN :terminal "
    "   AND rolled_up_at IS NULL AND rollup_failed_at IS NULL) AS waiting, "
    "(SELECT COUNT(*) FROM backup_jobs WHERE rollup_failed_at IS NOT NULL) AS failed, "
    "(SELECT COUNT(*) FROM backup_jobs WHERE rolled_up_at IS NOT NULL AND purged_at IS NULL) AS purge_backlog"
).bindparams(
    bindparam("active", value=list(ACTIVE_STATUSES), expanding=True),
    bindparam("terminal", value=sorted(TERMINAL_STATUSES), expanding=True),
)
_FAILED_JOBS = text(
    "SELECT id, rollup_attempts, rollup_last_error FROM backup_jobs WHERE rollup_failed_at IS NOT NULL "
    "ORDER BY rollup_failed_at DESC LIMIT 5"
)


def rollup_backlog(engine: Engine) -> dict:
    """Counts of running jobs and of the rollup's backlog, and the jobs set aside most recently."""
    with engine.connect() as conn:
        counts = conn.execute(_BACKLOG).one()
        failed = [
            {"job_id": r.id, "attempts": r.rollup_attempts, "last_error": (r.rollup_last_error or "")[:300]}
            for r in conn.execute(_FAILED_JOBS)
        ]
    return {
        "running": int(counts.running),
        "waiting": int(counts.waiting),
        "failed": int(counts.failed),
        "purge_backlog": int(counts.purge_backlog),
        "recently_failed": failed,
    }
