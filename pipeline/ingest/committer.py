"""GroupCommitter: updates that arrive together share one InfluxDB write and one MySQL transaction.

An update is acknowledged only after both: its point was accepted by InfluxDB, then its job's row
was updated in a committed transaction that also read the job's status. The transaction's statements
run while the points are being written (their round trips overlap); it commits only after InfluxDB
accepted them, and is rolled back if InfluxDB refused. Nothing acknowledged lives
only in a process's memory, and the order (point first, status second) means that a terminal update
committed by any process after this transaction finds these points already in InfluxDB.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.jobs.store import JobStore, Outcome, StateChange
from pipeline.metrics import INFLUX_ERRORS, INFLUX_WRITE_SECONDS, MYSQL_COMMIT_SECONDS, MYSQL_ERRORS, QUEUED_UPDATES
from pipeline.outages import StoreUnavailable, describe_outage, is_outage
from pipeline.settings import IngestSettings
from pipeline.tsdb.influx import AsyncInflux, InfluxError

__all__ = ["CommitStats", "GroupCommitter"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Submission:
    """One request's updates: its lines, its state changes, and the future its handler awaits."""

    lines: list[str]
    changes: list[StateChange]
    future: asyncio.Future


@dataclass(slots=True)
class CommitStats:
    """Counters of one process's group commits (readiness and metrics read them)."""

    commits: int = 0
    updates: int = 0
    points_written: int = 0
    failed_commits: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    commit_seconds: deque = field(default_factory=lambda: deque(maxlen=1000))
    influx_seconds: deque = field(default_factory=lambda: deque(maxlen=1000))
    mysql_seconds: deque = field(default_factory=lambda: deque(maxlen=1000))
    # Since when (epoch seconds) writes to InfluxDB, MySQL transactions, or the queue have been failing:
    # set at the first failure, cleared by the next success (the heartbeat reports them).
    influx_failing_since: float | None = None
    mysql_failing_since: float | None = None
    queue_full_since: float | None = None


class GroupCommitter:
    """Collects submissions; up to `commit_max_inflight` commits run at once, each taking what queued."""

    def __init__(self, influx: AsyncInflux, store: JobStore, settings: IngestSettings, *, rp: str | None) -> None:
        self.influx = influx
        self.store = store
        self.settings = settings
        self.rp = rp
        self.stats = CommitStats()
        self._queue: deque[_Submission] = deque()
        self._queued_updates = 0
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.commit_max_inflight)
        self._inflight: set[asyncio.Task] = set()
        self._runner: asyncio.Task | None = None
        self._closing = False

    @property
    def queued(self) -> int:
        return self._queued_updates

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="group-committer")

    async def stop(self) -> None:
        """Refuse new submissions, commit what is queued, wait for commits under way."""
        self._closing = True
        self._wake.set()
        if self._runner is not None:
            await self._runner
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def commit(self, lines: list[str], changes: list[StateChange]) -> list[Outcome]:
        """Queue one request's updates and wait until they are durable; one Outcome per change.

        Raises StoreUnavailable (503 + Retry-After) when a store cannot take them or the queue is full.
        """
        if self._closing:
            raise StoreUnavailable("this API process is shutting down; retry", self.settings.retry_after)
        if self._queued_updates + len(changes) > self.settings.max_queued_updates and self._queued_updates:
            if self.stats.queue_full_since is None:
                self.stats.queue_full_since = time.time()
            raise StoreUnavailable(
                f"{self._queued_updates} updates are waiting to be committed in this process; retry later",
                self.settings.retry_after,
            )
        if self.stats.queue_full_since is not None:
            self.stats.queue_full_since = None
        submission = _Submission(lines, changes, asyncio.get_running_loop().create_future())
        # The error is read here too, so a request that went away does not leave it unretrieved.
        submission.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append(submission)
        self._queued_updates += len(changes)
        QUEUED_UPDATES.inc(len(changes))
        self._wake.set()
        # Shielded: a client that disconnects does not cancel a commit its update already joined.
        return await asyncio.shield(submission.future)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                waited = self._slots.locked()
                await self._slots.acquire()
                if not waited and self.settings.commit_linger > 0:
                    # A free slot: let concurrent requests join this commit first (one write of many
                    # points costs about what one write of a single point does). After waiting for a
                    # slot, updates have piled up already, and lingering would only add latency.
                    await asyncio.sleep(self.settings.commit_linger)
                batch = self._take()
                task = asyncio.create_task(self._commit(batch))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            if self._closing and not self._queue:
                return

    def _done(self, task: asyncio.Task) -> None:
        self._inflight.discard(task)
        self._slots.release()

    def _take(self) -> list[_Submission]:
        batch: list[_Submission] = []
        count = 0
        while self._queue and (not batch or count + len(self._queue[0].changes) <= self.settings.commit_max_points):
            submission = self._queue.popleft()
            batch.append(submission)
            count += len(submission.changes)
        self._queued_updates -= count
        QUEUED_UPDATES.dec(count)
        return batch

    async def _commit(self, batch: list[_Submission]) -> None:
        started = time.perf_counter()
        try:
            outcomes = await self._write(batch)
        except Exception as exc:
            self._fail(batch, exc)
            return
        position = 0
        for submission in batch:
            count = len(submission.changes)
            self._resolve(submission, outcomes[position : position + count])
            position += count
        elapsed = time.perf_counter() - started
        self.stats.commits += 1
        self.stats.updates += position
        self.stats.commit_seconds.append(elapsed)
        if self.stats.last_error is not None:
            log.warning("group commits succeed again")
            self.stats.last_error = None

    async def _write(self, batch: Sequence[_Submission]) -> list[Outcome]:
        """Write the points and, meanwhile, run the MySQL statements; commit those once the points are in."""
        lines = [line for s in batch for line in s.lines]
        changes = [c for s in batch for c in s.changes]
        started = time.perf_counter()
        points = asyncio.create_task(self._write_points(lines))
        try:
            outcomes = await self.store.apply(changes, self.settings.snapshot_interval, durable=points)
        except Exception as exc:
            if not points.done():
                # MySQL failed first: the answer is 503 either way, but the write is not left running.
                await asyncio.wait([points])
            if not points.cancelled() and points.exception() is exc:
                raise  # InfluxDB's failure, counted by _write_points
            MYSQL_ERRORS.inc()
            if self.stats.mysql_failing_since is None:
                self.stats.mysql_failing_since = time.time()
            raise
        self.stats.mysql_failing_since = None
        # The transaction spans the write: its time is the whole commit's.
        elapsed = time.perf_counter() - started
        self.stats.mysql_seconds.append(elapsed)
        MYSQL_COMMIT_SECONDS.observe(elapsed)
        return outcomes

    async def _write_points(self, lines: list[str]) -> None:
        step = self.settings.commit_max_points
        started = time.perf_counter()
        try:
            for start in range(0, len(lines), step):
                async with asyncio.timeout(self.settings.commit_timeout):
                    await self.influx.write("\n".join(lines[start : start + step]), rp=self.rp)
                self.stats.points_written += min(step, len(lines) - start)
        except Exception:
            INFLUX_ERRORS.inc()
            if self.stats.influx_failing_since is None:
                self.stats.influx_failing_since = time.time()
            raise
        self.stats.influx_failing_since = None
        elapsed = time.perf_counter() - started
        self.stats.influx_seconds.append(elapsed)
        INFLUX_WRITE_SECONDS.observe(elapsed)

    def _fail(self, batch: list[_Submission], exc: Exception) -> None:
        self.stats.failed_commits += 1
        if is_outage(exc):
            detail = describe_outage(exc)
            if self.stats.last_error is None:
                log.warning("group commit failed, answering 503 until the stores answer: %s", detail)
        elif isinstance(exc, InfluxError):
            # InfluxDB refused the points (a field type conflict left by another writer, say): sending
            # them again will not help until someone fixes the measurement, so say it loudly.
            detail = f"InfluxDB refused the points: {exc}"
            log.error("group commit of %d updates refused by InfluxDB: %s", sum(len(s.changes) for s in batch), exc)
        else:
            detail = f"the update could not be committed ({type(exc).__name__}); see the API log"
            log.error("group commit failed", exc_info=exc)
        self.stats.last_error = detail
        self.stats.last_error_at = time.time()
        error = StoreUnavailable(detail, self.settings.retry_after)
        for submission in batch:
            if not submission.future.done():
                submission.future.set_exception(error)

    @staticmethod
    def _resolve(submission: _Submission, outcomes: list[Outcome]) -> None:
        if not submission.future.done():
            submission.future.set_result(outcomes)
