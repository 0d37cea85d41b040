"""Backup jobs in the relational store: creation, listing, and the JSON view the API serves."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, func, insert, select
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.exc import IntegrityError

from pipeline.db.tables import backup_disks, backup_jobs, machines
from pipeline.ingest.models import CreateBackup, server_job_id

__all__ = ["JobConflict", "aware", "create_job", "duration_seconds", "get_job", "job_view", "list_jobs"]

MAX_LIST = 1000


class JobConflict(Exception):
    """A client-chosen backup_id that already exists."""


def aware(moment: datetime | None) -> datetime | None:
    """Stored times are naive UTC; the API speaks RFC 3339 with a zone."""
    return None if moment is None else moment.replace(tzinfo=UTC)


def duration_seconds(row: Row | Any, now: datetime | None = None) -> float | None:
    """Seconds from start (or creation) to completion, or to now for a running job."""
    start = row.started_at or (row.created_at if row.completed_at else None)
    if start is None:
        return None
    end = row.completed_at or (now if row.status == "running" else None)
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
        "error_message": row.error_message,
        "avg_speed_bps": row.avg_speed_bps,
        "has_performance_metrics": row.rolled_up_at is not None,
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


_JOB_COLUMNS = [c for c in backup_jobs.c if c.name != "performance_metrics"]


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


def create_job(engine: Engine, body: CreateBackup, now: datetime | None = None) -> dict:
    """Insert a pending job, its disks, and upsert its machine; one transaction.

    Server-made ids are `{job_type}-{vm}-{unix_seconds}`; two jobs for one VM in the same
    second get a numeric suffix. A client-chosen id that exists raises JobConflict.
    """
    indexes = [d.disk_index for d in body.disks]
    if len(set(indexes)) != len(indexes):
        raise ValueError("disks: each disk_index may appear once")
    now = (now or datetime.now(UTC)).replace(tzinfo=None)
    base_id = body.backup_id or server_job_id(body.job_type, body.vm_name, int(now.timestamp()))
    total = sum(d.size_bytes for d in body.disks)
    for attempt in range(1, 100):
        job_id = base_id if attempt == 1 else f"{base_id}-{attempt}"
        try:
            with engine.begin() as conn:
                _insert_job(conn, job_id, body, total, now)
            break
        except IntegrityError as exc:
            if body.backup_id is not None:
                raise JobConflict(f"backup_id {job_id!r} already exists") from exc
    else:  # pragma: no cover - 99 jobs for one VM in one second
        raise JobConflict(f"could not find a free id near {base_id!r}")
    job = get_job(engine, job_id)
    assert job is not None
    return job


def _insert_job(conn: Connection, job_id: str, body: CreateBackup, total: int, now: datetime) -> None:
    conn.execute(
        insert(backup_jobs).values(
            id=job_id,
            vm_name=body.vm_name,
            repository_id=body.repository_id,
            backup_type=body.backup_type,
            job_type=body.job_type,
            status="pending",
            created_at=now,
            total_bytes=total,
        )
    )
    if body.disks:
        conn.execute(
            insert(backup_disks),
            [{"job_id": job_id, "disk_index": d.disk_index, "size_bytes": d.size_bytes} for d in body.disks],
        )
    details = body.machine
    values = {
        "vm_name": body.vm_name,
        "cpu_count": details.cpu_count if details else None,
        "memory_mb": details.memory_mb if details else None,
        "os_type": details.os_type if details else None,
        "protection_flow": details.protection_flow if details else None,
        "disk_count": len(body.disks) or None,
        "repository_id": body.repository_id,
        "created_at": now,
        "updated_at": now,
    }
    stmt = mysql_insert(machines).values(values)
    # Known details are kept when a later job does not repeat them.
    keep = {
        name: func.coalesce(stmt.inserted[name], machines.c[name])
        for name in ("cpu_count", "memory_mb", "os_type", "protection_flow", "disk_count")
    }
    conn.execute(stmt.on_duplicate_key_update(repository_id=stmt.inserted.repository_id, updated_at=now, **keep))
