"""Protected machines: the flows table and one machine's details, KPIs and trends, from `backup_jobs`."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, text

from pipeline.clock import aware
from pipeline.jobs.views import anomalies_of, duration_seconds, list_jobs

__all__ = ["get_machine", "list_machines", "success_rate"]

TREND_LIMIT = 500


def success_rate(successful: int, failed: int) -> float | None:
    """Completed ÷ (completed + failed) in percent, one decimal; None before any job has ended."""
    ended = successful + failed
    return None if ended == 0 else round(100.0 * successful / ended, 1)


def _flows_sql(one_vm: bool):
    # Per-VM totals in one GROUP BY, then each VM's latest job by the (vm_name, created_at) index.
    # (A join of two derived tables, GROUP BY and ROW_NUMBER, made MariaDB use a block-nested-loop
    # join: 2.6 s for 10,000 jobs; window functions alone took 0.7 s for 23,000; this 0.18 s.)
    # Two jobs of one VM created in the same microsecond both match: `_latest_per_vm` keeps one.
    where = "WHERE vm_name = :vm" if one_vm else ""
    return text(
        f"""
    SELECT j.vm_name, j.repository_id, j.id AS last_backup_id, j.backup_type AS last_type,
           j.job_type AS last_job_type, j.status AS last_status, j.created_at AS last_created_at,
           j.completed_at AS last_completed_at, j.bytes_transferred AS last_bytes, j.total_bytes AS last_total_bytes,
           s.total_jobs, s.successful, s.failed, s.cancelled, s.running, s.protected_bytes,
           m.cpu_count, m.memory_mb, m.os_type, m.disk_count, m.protection_flow
    FROM (
        SELECT vm_name, COUNT(*) AS total_jobs,
               SUM(status = 'completed') AS successful, SUM(status = 'failed') AS failed,
               SUM(status = 'cancelled') AS cancelled, SUM(status IN ('pending', 'running')) AS running,
               SUM(CASE WHEN status = 'completed' THEN bytes_transferred ELSE 0 END) AS protected_bytes,
               MAX(created_at) AS last_at
        FROM backup_jobs {where} GROUP BY vm_name
    ) AS s
    JOIN backup_jobs AS j ON j.vm_name = s.vm_name AND j.created_at = s.last_at
    LEFT JOIN machines AS m ON m.vm_name = s.vm_name
    ORDER BY j.created_at DESC, j.id DESC
    """
    )


def _latest_per_vm(rows) -> list:
    seen: set[str] = set()
    kept = []
    for row in rows:
        if row.vm_name not in seen:
            seen.add(row.vm_name)
            kept.append(row)
    return kept


def _machine_info(row) -> dict:
    return {
        "cpu_count": row.cpu_count,
        "memory_mb": row.memory_mb,
        "os_type": row.os_type,
        "disk_count": row.disk_count,
        "protection_flow": row.protection_flow,
    }


def _flow_view(row) -> dict:
    successful, failed = int(row.successful or 0), int(row.failed or 0)
    return {
        "vm_name": row.vm_name,
        "repository_id": row.repository_id,
        "total_backups": int(row.total_jobs),
        "successful": successful,
        "failed": failed,
        "cancelled": int(row.cancelled or 0),
        "running": int(row.running or 0),
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
    }


def list_machines(engine: Engine) -> dict:
    """One row per VM with its latest job and success rate: the protection-flows table."""
    with engine.connect() as conn:
        rows = _latest_per_vm(conn.execute(_flows_sql(False)))
    return {"machines": [_flow_view(r) for r in rows], "total": len(rows)}


_TREND_SQL = text(
    """
    SELECT id, backup_type, job_type, status, created_at, started_at, completed_at,
           bytes_transferred, total_bytes, avg_speed_bps,
           JSON_EXTRACT(performance_metrics, '$.anomalies') AS anomalies
    FROM backup_jobs WHERE vm_name = :vm ORDER BY created_at DESC, id DESC LIMIT :limit
    """
)


def get_machine(engine: Engine, vm_name: str) -> dict | None:
    """VM details, KPIs and analytics (totals, rates, averages, a per-job trend series)."""
    with engine.connect() as conn:
        flow = next(iter(_latest_per_vm(conn.execute(_flows_sql(True), {"vm": vm_name}))), None)
        if flow is None:
            return None
        trend_rows = conn.execute(_TREND_SQL, {"vm": vm_name, "limit": TREND_LIMIT}).all()
    now = datetime.now(UTC).replace(tzinfo=None)
    completed = [r for r in trend_rows if r.status == "completed"]
    durations = [d for d in (duration_seconds(r) for r in completed) if d is not None]
    view = _flow_view(flow)
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
        "kpis": kpis,
        "last_backup": view["last_backup"],
        "trend": trend,
        "anomalies": flagged,
        "backups": list_jobs(engine, vm_name=vm_name, limit=100)["backups"],
    }
