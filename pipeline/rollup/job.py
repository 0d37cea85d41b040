"""RollupJob: claims finished jobs, rolls their points up into performance_metrics, then purges."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, or_, select, update

from pipeline.db.tables import backup_jobs
from pipeline.rollup.metrics import rollup_metrics
from pipeline.rollup.purge import PURGE_COLUMNS, TelemetryPurger
from pipeline.rollup.reader import TelemetryReader
from pipeline.settings import SchedulerSettings

__all__ = ["RollupJob"]

log = logging.getLogger(__name__)

FINISHED = ("completed", "failed", "cancelled")


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.replace(tzinfo=UTC).timestamp()


class RollupJob:
    """Exactly-once rollup across any number of scheduler processes.

    A job is claimed with `SELECT ... FOR UPDATE SKIP LOCKED`; its row stays locked while its
    points are read and its summary computed, and the summary is committed in the same
    transaction. Another scheduler skips the locked row and, after the commit, no longer
    matches it (`rolled_up_at` is set). Raw points are removed only after that commit.
    """

    def __init__(
        self, engine: Engine, reader: TelemetryReader, purger: TelemetryPurger, settings: SchedulerSettings
    ) -> None:
        self.engine = engine
        self.reader = reader
        self.purger = purger
        self.settings = settings

    def run_once(self) -> int:
        """Roll up finished jobs until none is left or the batch limit is reached; returns how many."""
        done = 0
        while done < self.settings.rollup_batch:
            job_id = self.roll_up_next()
            if job_id is None:
                break
            done += 1
        return done

    def _claim(self, conn: Connection):
        grace_cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=self.settings.pending_points_grace)
        return conn.execute(
            select(*PURGE_COLUMNS, backup_jobs.c.started_at)
            .where(
                backup_jobs.c.status.in_(FINISHED),
                backup_jobs.c.rolled_up_at.is_(None),
                # Points the API still holds for this job (InfluxDB was down at its end) are waited
                # for, up to a grace period after which the job is summarised with what arrived.
                or_(backup_jobs.c.telemetry_pending.is_(False), backup_jobs.c.completed_at < grace_cutoff),
            )
            .order_by(backup_jobs.c.completed_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()

    def roll_up_next(self) -> str | None:
        with self.engine.connect().execution_options(isolation_level="READ COMMITTED") as conn:
            with conn.begin():
                job = self._claim(conn)
                if job is None:
                    return None
                started = time.perf_counter()
                samples = self.reader.samples(job.id)
                disks = self.reader.disks(job.id)
                metrics = rollup_metrics(
                    samples,
                    final_status=job.status,
                    started_at=_epoch(job.started_at),
                    completed_at=_epoch(job.completed_at),
                    disks=disks,
                    max_chart_points=self.settings.chart_max_points,
                    # Room for the byte totals added below, so the summary stays under 8 KB.
                    max_bytes=8000 - 100,
                )
                metrics.update(self.reader.totals(job.id))
                conn.execute(
                    update(backup_jobs)
                    .where(backup_jobs.c.id == job.id)
                    .values(
                        performance_metrics=metrics,
                        avg_speed_bps=metrics["avg_speed_bps"],
                        rolled_up_at=datetime.now(UTC).replace(tzinfo=None),
                    )
                )
            log.info(
                "rolled up %s (%s): %d points, avg %.1f MiB/s, peak %.1f MiB/s in %.0f ms",
                job.id,
                job.status,
                metrics["snapshots_recorded"],
                metrics["avg_speed_mbps"],
                metrics["peak_speed_mbps"],
                (time.perf_counter() - started) * 1000,
            )
        try:
            self.purger.purge(job, metrics)
        except Exception as exc:  # the purge job retries; the summary is safe
            log.warning("rolled up %s but could not purge its raw telemetry yet: %s", job.id, exc)
        return job.id
