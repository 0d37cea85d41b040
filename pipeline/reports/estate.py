"""The estate over a period: jobs by status, success rate, bytes, failures and their reasons, machines out of
RPO, unusual runs, the slowest and largest jobs, the busiest hour, and week-over-week against the period before.

A job belongs to the period it was created in (`created_at`, the server's clock). The estate's figures come
from `estate_hours` (pipeline/reports/store.py: exact at the moment of reading, a few hundred rows for a
month); failures and unusual runs from `(status, created_at)` and `(anomaly_count, created_at)`; the
machines out of RPO from `machines`. One machine's figures are a range of `(vm_name, created_at)`.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, bindparam, text

from pipeline.clock import aware
from pipeline.jobs.vocabulary import COMPLETED
from pipeline.reports.compare import Figures, compare_periods
from pipeline.reports.hours import HourFigures, merge
from pipeline.reports.periods import Period
from pipeline.reports.store import EstateHoursStore

__all__ = ["LISTED", "estate_figures", "estate_summary", "estate_summary_and_hours", "machine_week_over_week"]

LISTED = 10
"""Rows in each list of a summary (failures, slowest, largest, out of RPO, unusual runs)."""

_DURATION = "TIMESTAMPDIFF(MICROSECOND, COALESCE(started_at, created_at), completed_at) / 1000000"
_IN_PERIOD = "created_at >= :start AND created_at < :end"
_TOTALS_SQL = (
    f"SELECT COUNT(*) AS jobs, SUM(status = :completed) AS completed, SUM(status = 'failed') AS failed, "
    f"SUM(status = 'cancelled') AS cancelled, SUM(status IN ('pending', 'running')) AS active, "
    f"SUM(CASE WHEN status = :completed THEN bytes_transferred ELSE 0 END) AS bytes, "
    f"AVG(CASE WHEN status = :completed THEN bytes_transferred END) AS avg_size, "
    f"AVG(CASE WHEN status = :completed THEN {_DURATION} END) AS avg_duration, "
    f"AVG(CASE WHEN status = :completed THEN avg_speed_bps END) AS avg_speed, "
    f"COUNT(DISTINCT vm_name) AS machines, SUM(COALESCE(anomaly_count, 0) > 0) AS unusual "
    f"FROM backup_jobs WHERE {_IN_PERIOD}"
)
# One machine's: a range of ix_backup_jobs_vm_name_created_at.
_MACHINE_TOTALS = text(_TOTALS_SQL + " AND vm_name = :vm").bindparams(completed=COMPLETED)
_REASONS = text(
    f"SELECT COALESCE(error_message, '') AS reason, COUNT(*) AS n, MAX(created_at) AS latest FROM backup_jobs "
    f"WHERE {_IN_PERIOD} AND status = 'failed' GROUP BY COALESCE(error_message, '') ORDER BY n DESC, latest DESC "
    "LIMIT :limit"
)
_JOB = (
    "id, vm_name, repository_id, backup_type, job_type, status, created_at, started_at, completed_at, bytes_transferred"
)
_FAILURES = text(
    f"SELECT {_JOB}, error_message FROM backup_jobs WHERE {_IN_PERIOD} AND status = 'failed' "
    "ORDER BY created_at DESC, id DESC LIMIT :limit"
)
_UNUSUAL = text(
    f"SELECT {_JOB}, JSON_EXTRACT(performance_metrics, '$.anomalies') AS anomalies FROM backup_jobs "
    f"WHERE {_IN_PERIOD} AND anomaly_count > 0 ORDER BY created_at DESC, id DESC LIMIT :limit"
)
_BY_ID = text(f"SELECT {_JOB}, {_DURATION} AS seconds FROM backup_jobs WHERE id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)
_MACHINES_SINCE = text("SELECT COUNT(*) FROM machines WHERE last_job_at >= :start")
_MACHINES_IN = text(f"SELECT COUNT(DISTINCT vm_name) FROM backup_jobs WHERE {_IN_PERIOD}")
# Out of RPO as the flows table has it (pipeline/insight/rpo.py): never backed up, or the last success older
# than the objective. Never backed up first, then the most overdue.
_OUT = "(last_success_at IS NULL OR TIMESTAMPDIFF(SECOND, last_success_at, :now) > COALESCE(rpo_seconds, :rpo_default))"
_OUT_OF_RPO = text(
    "SELECT vm_name, last_success_at, COALESCE(rpo_seconds, :rpo_default) AS rpo, "
    "TIMESTAMPDIFF(SECOND, last_success_at, :now) / COALESCE(rpo_seconds, :rpo_default) AS ratio "
    f"FROM machines WHERE {_OUT} ORDER BY last_success_at IS NOT NULL, ratio DESC, vm_name LIMIT :limit"
)
_OUT_OF_RPO_COUNT = text(f"SELECT COUNT(*) FROM machines WHERE {_OUT}")


def _rate(completed: int, failed: int) -> float | None:
    ended = completed + failed
    return None if ended == 0 else round(100.0 * completed / ended, 1)


def _job(row, **extra) -> dict:
    return {
        "backup_id": row.id,
        "vm_name": row.vm_name,
        "repository_id": row.repository_id,
        "type": row.backup_type,
        "job_type": row.job_type,
        "status": row.status,
        "created_at": aware(row.created_at),
        "started_at": aware(row.started_at),
        "completed_at": aware(row.completed_at),
        "bytes_transferred": int(row.bytes_transferred or 0),
        **extra,
    }


def _figures_of(t) -> tuple[dict, Figures]:
    completed, failed = int(t.completed or 0), int(t.failed or 0)
    totals = {
        "jobs": int(t.jobs),
        "completed": completed,
        "failed": failed,
        "cancelled": int(t.cancelled or 0),
        "running": int(t.active or 0),
        "success_rate": _rate(completed, failed),
        "bytes_protected": int(t.bytes or 0),
        "unusual_runs": int(t.unusual or 0),
    }
    figures = Figures(
        jobs=int(t.jobs),
        success_rate=totals["success_rate"],
        avg_duration_seconds=None if t.avg_duration is None else round(float(t.avg_duration), 1),
        avg_size_bytes=None if t.avg_size is None else round(float(t.avg_size)),
        avg_speed_bps=None if t.avg_speed is None else round(float(t.avg_speed)),
    )
    return totals, figures


def _figures_of_hours(h: HourFigures) -> tuple[dict, Figures]:
    row = SimpleNamespace(
        jobs=h.jobs, completed=h.completed, failed=h.failed, cancelled=h.cancelled, active=h.active,
        bytes=h.bytes_completed, unusual=h.unusual,
        avg_duration=h.duration_completed / h.completed if h.completed else None,
        avg_size=h.bytes_completed / h.completed if h.completed else None,
        avg_speed=h.speed_completed / h.speed_jobs if h.speed_jobs else None,
    )  # fmt: skip
    return _figures_of(row)


def estate_figures(conn: Connection, period: Period, vm_name: str | None = None) -> tuple[dict, Figures]:
    """The period's totals (of the estate, or of one machine), and the figures week-over-week compares."""
    if vm_name is None:
        return _figures_of_hours(EstateHoursStore(conn.engine).period_figures(conn, period.start, period.end))
    bounds = {"start": period.start, "end": period.end}
    return _figures_of(conn.execute(_MACHINE_TOTALS, {**bounds, "vm": vm_name}).one())


def _busiest_hour(hours: dict[datetime, HourFigures], zone: ZoneInfo) -> dict | None:
    local: Counter[int] = Counter()
    for hour, figures in hours.items():
        local[hour.replace(tzinfo=UTC).astimezone(zone).hour] += figures.jobs
    if not local or not sum(local.values()):
        return None
    hour, jobs = min(local.items(), key=lambda item: (-item[1], item[0]))
    label = f"{hour:02d}:00–{(hour + 1) % 24:02d}:00"
    return {"hour": hour, "jobs": jobs, "label": label, "by_hour": [local[h] for h in range(24)]}


def _jobs_by_id(conn: Connection, entries: list[list], key: str) -> list[dict]:
    """The jobs of a top list ([[value, id], ...]) in its order, with their duration."""
    ids = [job_id for _, job_id in entries]
    if not ids:
        return []
    rows = {r.id: r for r in conn.execute(_BY_ID, {"ids": ids})}
    return [_job(rows[i], duration_seconds=float(rows[i].seconds or 0)) for i in ids if i in rows]


def _machines(conn: Connection, period: Period, now: datetime) -> int:
    """Machines with a job created in the period: from their newest job when the period ends now (an index
    range of machines), else by reading the period's jobs."""
    if now - period.end < timedelta(minutes=1):
        return conn.execute(_MACHINES_SINCE, {"start": period.start}).scalar_one()
    return conn.execute(_MACHINES_IN, {"start": period.start, "end": period.end}).scalar_one()


def estate_summary(engine: Engine, period: Period, zone: ZoneInfo, rpo_default: int, now: datetime) -> dict:
    """Everything the estate report shows for `period` (naive UTC bounds; hours and days in `zone`)."""
    return estate_summary_and_hours(engine, period, zone, rpo_default, now)[0]


def estate_summary_and_hours(
    engine: Engine, period: Period, zone: ZoneInfo, rpo_default: int, now: datetime
) -> tuple[dict, dict[datetime, HourFigures]]:
    """The estate summary and the UTC hours it was added up from (the report documents chart them per day)."""
    bounds = {"start": period.start, "end": period.end, "limit": LISTED}
    hours_store = EstateHoursStore(engine)
    with engine.connect() as conn:
        hours = hours_store.hours(conn, period.start, period.end)
        merged = merge(hours.values())
        totals, figures = _figures_of_hours(merged)
        totals["machines"] = _machines(conn, period, now)
        previous = period.previous()
        _, before = _figures_of_hours(hours_store.period_figures(conn, previous.start, previous.end))
        reasons = [
            {"reason": r.reason or "(no reason given)", "jobs": int(r.n), "latest_at": aware(r.latest)}
            for r in conn.execute(_REASONS, bounds)
        ]
        failures = [_job(r, error_message=r.error_message) for r in conn.execute(_FAILURES, bounds)]
        slowest = _jobs_by_id(conn, merged.slowest, "slowest")
        largest = _jobs_by_id(conn, merged.largest, "largest")
        unusual = [_job(r, anomalies=_flags(r.anomalies)) for r in conn.execute(_UNUSUAL, bounds)]
        rpo = {"now": now, "rpo_default": rpo_default, "limit": LISTED}
        out_count = conn.execute(_OUT_OF_RPO_COUNT, rpo).scalar_one()
        out = [
            {
                "vm_name": r.vm_name,
                "last_success_at": aware(r.last_success_at),
                "rpo_seconds": int(r.rpo),
                "overdue_ratio": None if r.ratio is None else round(float(r.ratio), 2),
            }
            for r in conn.execute(_OUT_OF_RPO, rpo)
        ]
    summary = {
        "period": {"start": aware(period.start), "end": aware(period.end), "label": period.label},
        "time_zone": zone.key,
        "totals": totals,
        "failure_reasons": reasons,
        "failures": failures,
        "out_of_rpo": {"machines": int(out_count), "worst": out},
        "unusual_runs": unusual,
        "slowest": slowest,
        "largest": largest,
        "busiest_hour": _busiest_hour(hours, zone),
        "week_over_week": compare_periods("the estate", figures, before, previous.label),
        "generated_at": aware(now),
    }
    return summary, hours


def _flags(raw) -> list[dict]:
    if raw is None:
        return []
    value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    return [dict(a) for a in value] if isinstance(value, list) else []


def machine_week_over_week(conn: Connection, vm_name: str, period: Period) -> dict:
    """One machine's figures in `period` against the period before (the dialog's Analytics tab)."""
    _, now = estate_figures(conn, period, vm_name)
    _, before = estate_figures(conn, period.previous(), vm_name)
    return compare_periods(vm_name, now, before, period.previous().label)
