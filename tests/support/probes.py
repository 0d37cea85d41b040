"""Read-only probes of the real stores, used by tests to check what was (and was not) written."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select

from pipeline.db.tables import backup_jobs, job_telemetry_snapshots
from pipeline.tsdb.influx import SyncInflux

__all__ = ["count_points", "count_series", "mirror_rows", "rows_named", "send_batch", "update_body", "wait_for"]


def update_body(i: int, total: int = 1000, **extra) -> dict:
    return {
        "bytes_transferred": i * 10,
        "total_bytes": total * 10,
        "transfer_speed_bps": 1_000_000 + (i % 7) * 100_000,
        "progress_percent": min(100.0, 100.0 * i / total),
        "current_phase": "transferring",
        **extra,
    }


def send_batch(agent, job_id: str, steps: range, start: datetime, *, every_s: int, total: int, **extra) -> None:
    """Running updates `steps` of a backup job in one `POST /telemetry/batch`, stamped `every_s` apart
    from `start` (update i at start + i * every_s)."""
    items = [
        {
            "job_id": job_id,
            "job_type": "backup",
            **update_body(i, total=total, timestamp=(start + timedelta(seconds=every_s * i)).isoformat(), **extra),
        }
        for i in steps
    ]
    response = agent.post("/telemetry/batch", json={"updates": items})
    assert response.status_code in (200, 202, 207), response.text


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, interval: float = 0.1, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def count_points(influx: SyncInflux, job_id: str, measurement: str = "job_telemetry", where: str = "") -> int:
    results = influx.query(
        f'SELECT count(transfer_speed_bps) FROM "{measurement}" WHERE job_id = $job_id {where}', {"job_id": job_id}
    )
    series = results[0].get("series") if results else None
    return int(series[0]["values"][0][1]) if series else 0


def count_series(influx: SyncInflux, job_id: str) -> int:
    results = influx.query('SHOW SERIES FROM "job_telemetry" WHERE job_id = $job_id', {"job_id": job_id})
    return sum(len(s.get("values", [])) for r in results for s in r.get("series", []))


def rows_named(engine, vm_name: str) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).where(backup_jobs.c.vm_name == vm_name)).scalar_one()


def mirror_rows(engine, job_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(job_telemetry_snapshots).where(job_telemetry_snapshots.c.job_id == job_id)
        ).scalar_one()
