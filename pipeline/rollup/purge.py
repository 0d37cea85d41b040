"""After a summary is committed: write the kept `job_summary` point, then remove the raw telemetry."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import Engine, Row, bindparam, delete, select, update

from pipeline.db.tables import backup_jobs, job_telemetry_snapshots
from pipeline.tsdb.encoding import TELEMETRY, encode_summary
from pipeline.tsdb.influx import SyncInflux, quote_ident

__all__ = ["PURGE_COLUMNS", "TelemetryPurger", "summary_line"]

log = logging.getLogger(__name__)

PURGE_COLUMNS = (
    backup_jobs.c.id,
    backup_jobs.c.vm_name,
    backup_jobs.c.repository_id,
    backup_jobs.c.job_type,
    backup_jobs.c.backup_type,
    backup_jobs.c.status,
    backup_jobs.c.created_at,
    backup_jobs.c.completed_at,
    backup_jobs.c.performance_metrics,
)


def _ns(moment: datetime) -> int:
    aware = moment.replace(tzinfo=UTC)
    return (int(aware.timestamp()) * 1_000_000 + aware.microsecond) * 1000


def summary_line(job: Row, metrics: dict) -> str:
    """The `job_summary` point of a job: low-cardinality tags, the job id as a field."""
    tags = {
        "vm_name": job.vm_name,
        "repository_id": job.repository_id,
        "job_type": job.job_type,
        "backup_type": job.backup_type,
        "status": job.status,
    }
    fields = {
        "job_id": job.id,
        "duration_seconds": int(metrics.get("duration_seconds", 0)),
        "snapshots_recorded": int(metrics.get("snapshots_recorded", 0)),
        "bytes_transferred": int(metrics.get("bytes_transferred", 0) or 0),
        "total_bytes": int(metrics.get("total_bytes", 0) or 0),
        "peak_speed_bps": int(metrics.get("peak_speed_bps", 0)),
        "avg_speed_bps": int(metrics.get("avg_speed_bps", 0)),
        "min_speed_bps": int(metrics.get("min_speed_bps", 0)),
        "peak_speed_mbps": float(metrics.get("peak_speed_mbps", 0.0)),
        "avg_speed_mbps": float(metrics.get("avg_speed_mbps", 0.0)),
    }
    return encode_summary(tags, fields, _ns(job.completed_at or job.created_at))


class TelemetryPurger:
    """Every step is idempotent, so a purge interrupted anywhere is simply run again."""

    def __init__(self, engine: Engine, influx: SyncInflux, summary_rp: str) -> None:
        self.engine = engine
        self.influx = influx
        self.summary_rp = summary_rp

    def purge(self, job: Row, metrics: dict | None = None) -> None:
        metrics = metrics if metrics is not None else (job.performance_metrics or {})
        self.influx.write(summary_line(job, metrics), rp=self.summary_rp)
        # DROP SERIES also removes the series from the index, so per-job cardinality does not pile up.
        self.influx.query(f"DROP SERIES FROM {quote_ident(TELEMETRY)} WHERE job_id = $job_id", {"job_id": job.id})
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.engine.begin() as conn:
            conn.execute(delete(job_telemetry_snapshots).where(job_telemetry_snapshots.c.job_id == job.id))
            conn.execute(
                update(backup_jobs).where(backup_jobs.c.id == job.id).values(purged_at=now, telemetry_pending=False)
            )

    def retry_unfinished(self, limit: int = 500) -> int:
        """Purge jobs whose summary was committed but whose purge did not finish (a crash, an outage)."""
        with self.engine.connect() as conn:
            jobs = conn.execute(
                select(*PURGE_COLUMNS)
                .where(backup_jobs.c.rolled_up_at.is_not(None), backup_jobs.c.purged_at.is_(None))
                .limit(limit)
            ).all()
        for job in jobs:
            self.purge(job)
        return len(jobs)

    def sweep_leftovers(self) -> int:
        """Drop series of rolled-up jobs that points reached after their purge (a late or stray write)."""
        result = self.influx.query(f'SHOW TAG VALUES FROM {quote_ident(TELEMETRY)} WITH KEY = "job_id"')
        job_ids = [row[1] for r in result for s in r.get("series", []) for row in s.get("values", [])]
        if not job_ids:
            return 0
        with self.engine.connect() as conn:
            done = [
                row.id
                for row in conn.execute(
                    select(backup_jobs.c.id).where(
                        backup_jobs.c.id.in_(bindparam("ids", expanding=True)), backup_jobs.c.purged_at.is_not(None)
                    ),
                    {"ids": job_ids},
                )
            ]
        for job_id in done:
            log.info("dropping leftover series of rolled-up job %s", job_id)
            self.influx.query(f"DROP SERIES FROM {quote_ident(TELEMETRY)} WHERE job_id = $job_id", {"job_id": job_id})
        return len(done)
