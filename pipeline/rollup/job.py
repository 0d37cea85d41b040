"""RollupJob: claims finished jobs, rolls their points up into performance_metrics, then purges."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.db.tables import backup_jobs
from pipeline.jobs.store import JobStore, RetryPolicy, RollupClaim
from pipeline.outages import is_outage
from pipeline.rollup.purge import PURGE_COLUMNS, TelemetryPurger
from pipeline.rollup.reader import TelemetryReader
from pipeline.rollup.summary import SUMMARY_COLUMNS, JobSummarizer
from pipeline.settings import SchedulerSettings

__all__ = ["RollupJob", "RollupRun"]

log = logging.getLogger(__name__)

PURGE_BATCH = 50
"""A run purges the raw telemetry of this many rolled-up jobs at a time, in one statement."""

CLAIM_COLUMNS = (
    *PURGE_COLUMNS,
    *(c for c in SUMMARY_COLUMNS if c.name not in {p.name for p in PURGE_COLUMNS}),
    backup_jobs.c.rollup_attempts,
)


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

    After the commit the machine's failure risk is assessed again from its last finished runs (a
    backup's only: restores and replications are not its backups), in a transaction of its own.

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
        self.summarizer = JobSummarizer(reader, settings.chart_max_points)
        self.policy = RetryPolicy(settings.rollup_max_attempts, settings.rollup_retry_base, settings.rollup_retry_max)

    def run_once(self) -> RollupRun:
        """Roll up finished jobs until none is due or the batch limit is reached."""
        run = RollupRun()
        failed: list[str] = []
        done: list[tuple] = []
        try:
            while run.rolled_up + run.failed < self.settings.rollup_batch:
                try:
                    outcome = self.roll_up_next(skip=failed, purged=done)
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
                if len(done) >= PURGE_BATCH:
                    self._purge(done)
        finally:
            self._purge(done)
        return run

    def _purge(self, done: list[tuple]) -> None:
        """Purge the raw telemetry of the jobs rolled up so far, together; their summaries are committed."""
        if not done:
            return
        try:
            self.purger.purge_many(done)
        except Exception as exc:  # the purge job retries; the summaries are safe
            log.warning("rolled up %d jobs but could not purge their raw telemetry yet: %s", len(done), exc)
        done.clear()

    def roll_up_next(self, skip: list[str] | None = None, purged: list[tuple] | None = None) -> bool | None:
        """One job: True rolled up, False failed (recorded, and added to `skip`), None nothing due.
        Outages raise. With `purged`, a rolled-up job and its summary are added to it for the caller to
        purge with others (`run_once`: one DROP SERIES for a batch); without, it is purged at once."""
        with self.store.claim_rollup(CLAIM_COLUMNS, skip or ()) as claim:
            if claim is None:
                return None
            started = time.perf_counter()
            try:
                metrics, disk_charts = self.summarizer.summarize(claim.job, claim.conn)
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
        if job.job_type == "backup":
            try:
                self.store.assess_risk([job.vm_name])
            except Exception as exc:  # the summary is safe; the next rollup or reconcile of it assesses it again
                log.warning(
                    "rolled up %s but could not assess the failure risk of %r yet: %s", job.id, job.vm_name, exc
                )
        if purged is not None:
            purged.append((job, metrics))
        else:
            try:
                self.purger.purge(job, metrics)
            except Exception as exc:  # the purge job retries; the summary is safe
                log.warning("rolled up %s but could not purge its raw telemetry yet: %s", job.id, exc)
        self.on_rollup(time.perf_counter() - started, True)
        return True

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
