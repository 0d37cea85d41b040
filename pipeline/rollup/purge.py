"""After a summary is committed: write the kept `job_summary` point, then remove the raw telemetry."""

from __future__ import annotations

import logging
import re

from sqlalchemy import Row

from pipeline.clock import epoch_ns
from pipeline.db.tables import backup_jobs
from pipeline.jobs.store import JobStore
from pipeline.tsdb import queries
from pipeline.tsdb.encoding import encode_summary
from pipeline.tsdb.influx import SyncInflux

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


# Job ids are restricted to [A-Za-z0-9._-] (no escaping in a series key); anything else is not ours.
_JOB_ID_TAG = re.compile(r"(?:^|,)job_id=([A-Za-z0-9][A-Za-z0-9._-]{0,254})(?:,|$)")


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
    return encode_summary(tags, fields, epoch_ns(job.completed_at or job.created_at))


class TelemetryPurger:
    """Every step is idempotent, so a purge interrupted anywhere is simply run again."""

    def __init__(self, store: JobStore, influx: SyncInflux, summary_rp: str) -> None:
        self.store = store
        self.influx = influx
        self.summary_rp = summary_rp

    def purge(self, job: Row, metrics: dict | None = None) -> None:
        metrics = metrics if metrics is not None else (job.performance_metrics or {})
        self.influx.write(summary_line(job, metrics), rp=self.summary_rp)
        # DROP SERIES also removes the series from the index, so per-job cardinality does not pile up.
        self.influx.query(*queries.drop_series(job.id))
        self.store.mark_purged(job.id)

    def purge_many(self, done: list[tuple[Row, dict]]) -> None:
        """`purge` for several rolled-up jobs at once: one write of their summary points, one DROP SERIES
        for all of them (it walks every shard of the raw policy: once per batch instead of once per job)."""
        if not done:
            return
        self.influx.write("\n".join(summary_line(job, metrics) for job, metrics in done), rp=self.summary_rp)
        self.influx.query(*queries.drop_series_many([job.id for job, _ in done]))
        self.store.mark_purged_many([job.id for job, _ in done])

    def retry_unfinished(self, limit: int = 500) -> int:
        """Purge jobs whose summary was committed but whose purge did not finish (a crash, an outage)."""
        jobs = self.store.unpurged(PURGE_COLUMNS, limit)
        for job in jobs:
            self.purge(job)
        return len(jobs)

    def live_job_ids(self) -> set[str]:
        """Job ids of the `job_telemetry` series that exist now.

        `SHOW SERIES`, not `SHOW TAG VALUES`: on InfluxDB 1.6 the latter keeps listing the values of
        series already dropped, which made every sweep drop the same jobs again, forever.
        """
        result = self.influx.query(*queries.show_series())
        ids = set()
        for r in result:
            for s in r.get("series", []):
                for (key,) in s.get("values", []):
                    match = _JOB_ID_TAG.search(key)
                    if match:
                        ids.add(match.group(1))
        return ids

    def sweep_leftovers(self) -> list[str]:
        """Drop series of purged jobs that points reached after their purge (a late or stray write);
        returns the jobs whose series were dropped. Only series that exist are looked at, so once they
        are dropped the next sweep has nothing to do."""
        done = self.store.purged_among(sorted(self.live_job_ids()))
        for job_id in done:
            log.info("dropping leftover series of rolled-up job %s", job_id)
            self.influx.query(*queries.drop_series(job_id))
        return done
