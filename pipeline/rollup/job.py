"""RollupJob: claims finished jobs, rolls their points up into performance_metrics, then purges."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.clock import epoch_ns
from pipeline.db.tables import backup_jobs
from pipeline.insight.anomaly import RunFigures, detect_anomalies
from pipeline.insight.baseline import previous_runs
from pipeline.insight.bottleneck import bottleneck
from pipeline.jobs.store import JobStore, RetryPolicy, RollupClaim
from pipeline.outages import is_outage
from pipeline.rollup.metrics import JobTotals, SampleColumns, headline, rollup_metrics
from pipeline.rollup.purge import PURGE_COLUMNS, TelemetryPurger
from pipeline.rollup.reader import JobWindow, TelemetryReader
from pipeline.settings import SchedulerSettings

__all__ = ["RollupJob", "RollupRun"]

log = logging.getLogger(__name__)

CLAIM_COLUMNS = (
    *PURGE_COLUMNS,
    backup_jobs.c.started_at,
    backup_jobs.c.last_telemetry_at,
    backup_jobs.c.rollup_attempts,
)
# Points are stamped from started_at (the earliest accepted update) to the job's last accepted update;
# a disk's update may be stamped a little after the job's own last one.
_DISK_MARGIN_NS = 300 * 10**9


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.replace(tzinfo=UTC).timestamp()


@dataclass
class RollupRun:
    """What one run did: jobs rolled up, jobs whose rollup failed (recorded), and whether an outage stopped it."""

    rolled_up: int = 0
    failed: int = 0
    stopped_by: str | None = None


class RollupJob:
    """Exactly-once rollup across any number of scheduler processes, isolated per job.

    A job is claimed with `SELECT ... FOR UPDATE SKIP LOCKED`; its row stays locked while its
    points are read and its summary computed, and the summary is committed in the same
    transaction. Another scheduler skips the locked row and, after the commit, no longer
    matches it. Raw points are removed only after that commit.

    A job whose rollup raises (bad data, a bug) has the failure recorded in the same transaction
    and is retried with back-off, then set aside; the run goes on with the next job. An outage of
    InfluxDB or MySQL is nobody's fault: nothing is recorded and the run stops until the next one.
    """

    def __init__(
        self,
        store: JobStore,
        reader: TelemetryReader,
        purger: TelemetryPurger,
        settings: SchedulerSettings,
        on_rollup: Callable[[float, bool], None] | None = None,
    ) -> None:
        self.on_rollup = on_rollup or (lambda _seconds, _rolled_up: None)
        self.store = store
        self.reader = reader
        self.purger = purger
        self.settings = settings
        self.policy = RetryPolicy(settings.rollup_max_attempts, settings.rollup_retry_base, settings.rollup_retry_max)

    def run_once(self) -> RollupRun:
        """Roll up finished jobs until none is due or the batch limit is reached."""
        run = RollupRun()
        failed: list[str] = []
        while run.rolled_up + run.failed < self.settings.rollup_batch:
            try:
                outcome = self.roll_up_next(skip=failed)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                run.stopped_by = str(exc)
                break
            if outcome is None:
                break
            if outcome:
                run.rolled_up += 1
            else:
                run.failed += 1
        return run

    def roll_up_next(self, skip: list[str] | None = None) -> bool | None:
        """One job: True rolled up, False failed (recorded, and added to `skip`), None nothing due.
        Outages raise."""
        with self.store.claim_rollup(CLAIM_COLUMNS, skip or ()) as claim:
            if claim is None:
                return None
            started = time.perf_counter()
            try:
                metrics, disk_charts = self._metrics(claim)
            except Exception as exc:
                if is_outage(exc):
                    raise
                self._record_failure(claim, exc)
                if skip is not None:
                    skip.append(claim.job.id)  # retried in a later run, after its back-off
                self.on_rollup(time.perf_counter() - started, False)
                return False
            claim.save(metrics, disk_charts)
        job = claim.job
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
        self.on_rollup(time.perf_counter() - started, True)
        return True

    def _metrics(self, claim: RollupClaim) -> tuple[dict, dict[int, list[dict]]]:
        job = claim.job
        common = {
            "final_status": job.status,
            "started_at": _epoch(job.started_at),
            "completed_at": _epoch(job.completed_at),
            "max_chart_points": self.settings.chart_max_points,
        }
        if job.started_at is None:  # no update was ever accepted: no points to read
            return rollup_metrics(SampleColumns(), totals=JobTotals(), **common), {}
        ends = [m for m in (job.completed_at, job.last_telemetry_at) if m is not None]
        # Stored times are whole microseconds; a point's nanoseconds may go 999 past them.
        window = JobWindow(job.id, epoch_ns(job.started_at), epoch_ns(max(ends)) + 999, _DISK_MARGIN_NS)
        samples, disks, totals = self.reader.samples(window), self.reader.disks(window), self.reader.totals(window)
        extra: dict = {}
        limiting = bottleneck(self.reader.stage_loads(window))
        if limiting is not None:
            extra["bottleneck"] = limiting  # the mean load of each stage over the run, and the busiest
        if job.status == "completed":  # a failed or cancelled run is unusual by its status already
            duration, avg = headline(samples, started_at=common["started_at"], completed_at=common["completed_at"])
            run = RunFigures(duration, totals.bytes_transferred, round(avg))
            previous = previous_runs(claim.conn, job.vm_name, job.backup_type, job.id, job.created_at)
            extra["anomalies"] = [a.as_dict() for a in detect_anomalies(run, previous)]
            extra["anomaly_baseline_runs"] = len(previous)
        curves = self.reader.disk_curves(window) if disks else {}
        return rollup_metrics(samples, disks=disks, totals=totals, extra=extra, **common), curves

    def _record_failure(self, claim: RollupClaim, exc: Exception) -> None:
        error = "".join(traceback.format_exception_only(exc)).strip()
        attempts, gave_up = claim.fail(error, self.policy)
        if gave_up:
            log.error(
                "rollup of %s failed %d times; set aside as failed-to-roll-up (its raw telemetry is kept): %s",
                claim.job.id,
                attempts,
                error,
                exc_info=exc,
            )
        else:
            log.error(
                "rollup of %s failed (attempt %d of %d), retrying in %.0f s: %s",
                claim.job.id,
                attempts,
                self.policy.max_attempts,
                self.policy.delay(attempts),
                error,
                exc_info=exc,
            )
