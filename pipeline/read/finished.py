"""Summaries of finished jobs whose rollup has not run yet, computed on the spot by the rollup's own code."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import anyio
from anyio import to_thread
from sqlalchemy import Engine, select

from pipeline.db.tables import backup_jobs
from pipeline.metrics import SUMMARY_SECONDS
from pipeline.outages import StoreUnavailable, describe_outage, is_outage
from pipeline.rollup.reader import TelemetryReader
from pipeline.rollup.summary import SUMMARY_COLUMNS, JobSummarizer
from pipeline.tsdb.influx import SyncInflux

__all__ = ["FinishedSummaries"]

log = logging.getLogger(__name__)

# A computation of a 100,000-point job takes about a second and some 40 MB (bench/rollup.py): a few at
# once keep the API's other requests going while many finished jobs are looked at together.
MAX_CONCURRENT = 2


@dataclass(eq=False)
class _Flight:
    """One computation under way, shared by every request for that job meanwhile."""

    done: anyio.Event = field(default_factory=anyio.Event)
    metrics: dict | None = None
    error: Exception | None = None
    finished: bool = False


class FinishedSummaries:
    """The `performance_metrics` the scheduler is about to store for a finished job, computed now.

    A client that polls only while a job runs (the job sheet's hook) keeps the first answer whose status is
    no longer `running`: for a finished job that answer must be its final view. A finished job's points
    are final (its terminal update commits only after every acknowledged point is in InfluxDB, and later
    updates are refused), so `JobSummarizer`, the scheduler's code, computes here what the scheduler
    stores. Nothing is stored by a read: the summary is kept in this process (bounded LRU) until the
    stored one replaces it, and concurrent requests for one job share one computation.
    """

    def __init__(
        self,
        engine: Engine,
        influx: SyncInflux,
        raw_rp: str,
        max_chart_points: int,
        *,
        retry_after: int = 5,
        cache_size: int = 1000,
    ) -> None:
        self.engine = engine
        self.summarizer = JobSummarizer(TelemetryReader(influx, raw_rp), max_chart_points)
        self.retry_after = retry_after
        self.cache_size = cache_size
        self._computed: OrderedDict[str, dict] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._limiter: anyio.CapacityLimiter | None = None

    def forget(self, job_id: str) -> None:
        """The job's stored summary exists: the computed one is no longer needed."""
        self._computed.pop(job_id, None)

    async def get(self, job_id: str) -> dict | None:
        """The finished job's summary; None when there is none to give (the job is gone, or its rollup
        fails: the caller answers from the raw points, as before). A store outage raises StoreUnavailable."""
        while True:
            hit = self._computed.get(job_id)
            if hit is not None:
                self._computed.move_to_end(job_id)
                return hit
            flight = self._flights.get(job_id)
            if flight is None:
                flight = self._flights[job_id] = _Flight()
                await self._fly(job_id, flight)
            else:
                await flight.done.wait()
            if flight.error is not None:
                raise StoreUnavailable(
                    f"the summary of finished job {job_id!r} cannot be computed now: {describe_outage(flight.error)}",
                    self.retry_after,
                ) from flight.error
            if flight.finished:
                return flight.metrics
            # The request that computed was cancelled before it could: this one computes.

    async def _fly(self, job_id: str, flight: _Flight) -> None:
        if self._limiter is None:  # made here: anyio's limiter belongs to the running event loop
            self._limiter = anyio.CapacityLimiter(MAX_CONCURRENT)
        try:
            started = time.perf_counter()
            # Not abandoned on cancellation: the thread's result still serves the requests waiting for it.
            metrics, computed = await to_thread.run_sync(self._compute, job_id, limiter=self._limiter)
            if computed:
                SUMMARY_SECONDS.observe(time.perf_counter() - started)
                self._computed[job_id] = metrics
                if len(self._computed) > self.cache_size:
                    self._computed.popitem(last=False)
            flight.metrics, flight.finished = metrics, True
        except Exception as exc:
            if is_outage(exc):
                flight.error = exc  # the client is told to retry (503): never a non-final answer instead
            else:
                # Bad data or a bug: the scheduler's rollup will meet it too, record it and retry it.
                log.exception("could not compute the summary of finished job %s; answering from its points", job_id)
                flight.finished = True
        finally:
            del self._flights[job_id]
            flight.done.set()

    def _compute(self, job_id: str) -> tuple[dict | None, bool]:
        """(summary or None, whether it was computed here rather than read as stored). In a worker thread."""
        columns = (*SUMMARY_COLUMNS, backup_jobs.c.performance_metrics, backup_jobs.c.rollup_attempts)
        with self.engine.connect() as conn:
            job = conn.execute(select(*columns).where(backup_jobs.c.id == job_id)).first()
            if job is None or job.performance_metrics is not None:
                return (None if job is None else job.performance_metrics), False
            if job.rollup_attempts:
                # The scheduler's rollup of this job raised (outages are not counted): this would too.
                return None, False
            metrics, _ = self.summarizer.summarize(job, conn, curves=False)
            # A rollup may have committed and purged the points while they were read. It commits before
            # it purges, so a fresh read (a new transaction, not this one's snapshot) then finds its summary.
            conn.rollback()
            stored = conn.execute(select(backup_jobs.c.performance_metrics).where(backup_jobs.c.id == job_id)).first()
        if stored is not None and stored.performance_metrics is not None:
            return stored.performance_metrics, False
        return metrics, True
