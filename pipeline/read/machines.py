"""Protected machines: the flows table (paged, sorted, with RPO and failure risk) and one machine's details,
KPIs and trends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text

from pipeline.clock import aware, utc_now
from pipeline.insight.risk import INTERCEPT, RPO_CAP, WEIGHTS, HistoryRisk, failure_risk
from pipeline.insight.rpo import rpo_status
from pipeline.read.jobs import anomalies_of, duration_seconds, list_jobs
from pipeline.reports.estate import machine_week_over_week
from pipeline.reports.periods import parse_period

__all__ = ["MACHINE_SORTS", "MachineQuery", "get_machine", "list_machines", "registered_machine", "success_rate"]

TREND_LIMIT = 500
MachineSort = Literal["rpo", "vm_name", "last_backup", "success_rate", "total_backups", "risk"]
MACHINE_SORTS: tuple[str, ...] = ("rpo", "vm_name", "last_backup", "success_rate", "total_backups", "risk")


def success_rate(successful: int, failed: int) -> float | None:
    """Completed ÷ (completed + failed) in percent, one decimal; None before any job has ended."""
    ended = successful + failed
    return None if ended == 0 else round(100.0 * successful / ended, 1)


@dataclass(frozen=True)
class MachineQuery:
    """A page of the flows table: which rows, in which order."""

    limit: int = 100
    offset: int = 0
    sort: MachineSort = "rpo"
    descending: bool = True
    search: str | None = None
    out_of_rpo: bool | None = None


# One row per machine from its counters (kept by the job store), with its latest job by primary key:
# no GROUP BY over the jobs. The RPO order is "how many objectives overdue": never backed up first.
_SELECT = """
    SELECT m.vm_name, m.repository_id, m.cpu_count, m.memory_mb, m.os_type, m.disk_count, m.protection_flow,
           m.total_jobs, m.successful, m.failed, m.cancelled, m.protected_bytes, m.last_success_at, m.rpo_seconds,
           m.risk_logit, m.risk_factors,
           j.id AS last_backup_id, j.backup_type AS last_type, j.job_type AS last_job_type, j.status AS last_status,
           j.created_at AS last_created_at, j.completed_at AS last_completed_at, j.bytes_transferred AS last_bytes,
           j.total_bytes AS last_total_bytes
    FROM machines AS m LEFT JOIN backup_jobs AS j ON j.id = m.last_job_id
"""
_OVERDUE = (
    "(TIMESTAMPDIFF(SECOND, COALESCE(m.last_success_at, '1970-01-01'), UTC_TIMESTAMP()) "
    "/ COALESCE(m.rpo_seconds, :rpo_default))"
)
# The failure risk's logit: the part its runs decided (kept by the job store; the intercept until assessed)
# plus the RPO margin's points now, as pipeline/insight/risk.py adds them. The score is monotonic in it,
# so this is the score's order: one expression over the machines' own rows, as the RPO order is.
_RISK = (
    "(COALESCE(m.risk_logit, :risk_intercept) + :risk_rpo_weight * COALESCE(LEAST(GREATEST("
    "TIMESTAMPDIFF(SECOND, m.last_success_at, UTC_TIMESTAMP()), 0) / COALESCE(m.rpo_seconds, :rpo_default), "
    ":risk_cap), :risk_cap))"
)
_RISK_PARAMS = {"risk_intercept": INTERCEPT, "risk_rpo_weight": WEIGHTS["rpo"], "risk_cap": RPO_CAP}
_ORDER = {
    "rpo": _OVERDUE,
    "vm_name": "m.vm_name",
    "last_backup": "m.last_job_at",
    "success_rate": "(m.successful / NULLIF(m.successful + m.failed, 0))",
    "total_backups": "m.total_jobs",
    "risk": _RISK,
}


def _where(query: MachineQuery) -> tuple[str, dict]:
    conditions, params = ["m.total_jobs > 0"], {}
    if query.search:
        # A substring of the name or the repository; LIKE's own wildcards in the text are literal.
        pattern = "%" + query.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append("(m.vm_name LIKE :pattern OR m.repository_id LIKE :pattern)")
        params["pattern"] = pattern
    if query.out_of_rpo is not None:
        conditions.append(f"{_OVERDUE} {'>=' if query.out_of_rpo else '<'} 1")
    return " WHERE " + " AND ".join(conditions), params


def list_machines(engine: Engine, query: MachineQuery, rpo_default: int) -> dict:
    """A page of the flows table: one row per VM with its latest job, success rate, sizes and RPO status."""
    where, params = _where(query)
    direction = "DESC" if query.descending else "ASC"
    params |= {"rpo_default": rpo_default, "limit": query.limit, "offset": query.offset, **_RISK_PARAMS}
    order = f"{_ORDER[query.sort]} {direction}, m.vm_name ASC"
    with engine.connect() as conn:
        total = conn.execute(text(f"SELECT COUNT(*) FROM machines AS m{where}"), params).scalar_one()
        rows = conn.execute(text(f"{_SELECT}{where} ORDER BY {order} LIMIT :limit OFFSET :offset"), params).all()
    now = datetime.now(UTC).replace(tzinfo=None)
    return {"machines": [_flow_view(r, rpo_default, now) for r in rows], "total": int(total)}


def _machine_info(row) -> dict:
    return {
        "cpu_count": row.cpu_count,
        "memory_mb": row.memory_mb,
        "os_type": row.os_type,
        "disk_count": row.disk_count,
        "protection_flow": row.protection_flow,
    }


def _flow_view(row, rpo_default: int, now: datetime) -> dict:
    successful, failed = int(row.successful or 0), int(row.failed or 0)
    cancelled = int(row.cancelled or 0)
    rpo = rpo_status(row.last_success_at, row.rpo_seconds, rpo_default, now)
    history = HistoryRisk.stored(row.risk_logit, row.risk_factors)
    risk = failure_risk(history, age_seconds=rpo["age_seconds"], rpo_seconds=rpo["rpo_seconds"])
    return {
        "vm_name": row.vm_name,
        "repository_id": row.repository_id,
        "total_backups": int(row.total_jobs),
        "successful": successful,
        "failed": failed,
        "cancelled": cancelled,
        "running": max(0, int(row.total_jobs) - successful - failed - cancelled),
        "success_rate": success_rate(successful, failed),
        "total_protected_bytes": int(row.protected_bytes or 0),
        "last_backup": {
            "backup_id": row.last_backup_id,
            "type": row.last_type,
            "job_type": row.last_job_type,
            "status": row.last_status,
            "created_at": aware(row.last_created_at),
            "completed_at": aware(row.last_completed_at),
            "bytes_transferred": row.last_bytes,
            "total_bytes": row.last_total_bytes,
        },
        "machine": _machine_info(row),
        "rpo": rpo,
        "risk": risk.as_dict(),
    }


_TREND_SQL = text(
    """
    SELECT id, backup_type, job_type, status, created_at, started_at, completed_at, last_telemetry_at, last_seen_at,
           bytes_transferred, total_bytes, avg_speed_bps,
           JSON_EXTRACT(performance_metrics, '$.anomalies') AS anomalies
    FROM backup_jobs WHERE vm_name = :vm ORDER BY created_at DESC, id DESC LIMIT :limit
    """
)


def get_machine(engine: Engine, vm_name: str, rpo_default: int) -> dict | None:
    """VM details, KPIs and analytics (totals, rates, averages, a per-job trend series, RPO status)."""
    with engine.connect() as conn:
        flow = conn.execute(text(f"{_SELECT} WHERE m.vm_name = :vm AND m.total_jobs > 0"), {"vm": vm_name}).first()
        if flow is None:
            return None
        trend_rows = conn.execute(_TREND_SQL, {"vm": vm_name, "limit": TREND_LIMIT}).all()
        week = machine_week_over_week(conn, vm_name, parse_period("7d", None, None, utc_now(), ZoneInfo("UTC")))
    now = datetime.now(UTC).replace(tzinfo=None)
    completed = [r for r in trend_rows if r.status == "completed"]
    durations = [d for d in (duration_seconds(r) for r in completed) if d is not None]
    view = _flow_view(flow, rpo_default, now)
    kpis = {
        "total_backups": view["total_backups"],
        "successful": view["successful"],
        "failed": view["failed"],
        "cancelled": view["cancelled"],
        "running": view["running"],
        "success_rate": view["success_rate"],
        "last_backup_at": view["last_backup"]["created_at"],
        "total_protected_bytes": view["total_protected_bytes"],
        "average_size_bytes": round(sum(r.bytes_transferred for r in completed) / len(completed))
        if completed
        else None,
        "average_duration_seconds": round(sum(durations) / len(durations), 1) if durations else None,
    }
    trend = [
        {
            "backup_id": r.id,
            "created_at": aware(r.created_at),
            "type": r.backup_type,
            "job_type": r.job_type,
            "status": r.status,
            "size_bytes": r.bytes_transferred,
            "total_bytes": r.total_bytes,
            "duration_seconds": duration_seconds(r, now),
            "avg_speed_bps": r.avg_speed_bps,
            "anomalies": anomalies_of(r.anomalies),
        }
        for r in reversed(trend_rows)
    ]
    # The unusual runs, newest first: what the Analytics tab lists.
    flagged = [
        {"backup_id": t["backup_id"], "created_at": t["created_at"], "type": t["type"], **a}
        for t in reversed(trend)
        for a in t["anomalies"]
    ]
    return {
        "vm_name": vm_name,
        "repository_id": view["repository_id"],
        "machine": view["machine"],
        "rpo": view["rpo"],
        "risk": view["risk"],
        "kpis": kpis,
        "last_backup": view["last_backup"],
        "trend": trend,
        "anomalies": flagged,
        "week_over_week": week,
        "backups": list_jobs(engine, vm_name=vm_name, limit=100)["backups"],
    }


def registered_machine(engine: Engine, vm_name: str, rpo_default: int) -> dict | None:
    """A machine as registered (with or without jobs): its details, RPO status and since when it is known."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT vm_name, repository_id, cpu_count, memory_mb, os_type, disk_count, protection_flow, "
                "created_at, total_jobs, last_success_at, rpo_seconds FROM machines WHERE vm_name = :vm"
            ),
            {"vm": vm_name},
        ).first()
    if row is None:
        return None
    now = datetime.now(UTC).replace(tzinfo=None)
    return {
        "vm_name": row.vm_name,
        "repository_id": row.repository_id,
        "machine": _machine_info(row),
        "rpo": rpo_status(row.last_success_at, row.rpo_seconds, rpo_default, now),
        "registered_at": aware(row.created_at),
        "total_backups": int(row.total_jobs),
    }
