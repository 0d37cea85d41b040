"""TelemetryIngest: turns validated updates into points, current state and mirror rows."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from anyio import to_thread
from sqlalchemy import Engine, func
from sqlalchemy import update as sql_update

from pipeline.db.tables import backup_disks, backup_jobs
from pipeline.ingest.coalescer import (
    DiskState,
    JobState,
    JobStateCoalescer,
    PendingWrites,
    utc_naive,
    write_pending,
)
from pipeline.ingest.models import TERMINAL_STATUSES, BatchUpdate, TelemetryUpdate
from pipeline.ingest.registry import JobEntry, JobRegistry
from pipeline.settings import Settings
from pipeline.tsdb.batcher import BufferFull, PointBatcher
from pipeline.tsdb.encoding import telemetry_line
from pipeline.tsdb.influx import AsyncInflux

__all__ = ["IngestError", "IngestResult", "TelemetryIngest"]

log = logging.getLogger(__name__)


class IngestError(Exception):
    """An update that cannot be accepted, with the HTTP status that says why."""

    def __init__(self, status: int, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


@dataclass(slots=True)
class IngestResult:
    status: int
    body: dict


class TelemetryIngest:
    """The ingest path. Running updates touch only memory; terminal ones wait for durability."""

    def __init__(self, settings: Settings, engine: Engine, influx: AsyncInflux) -> None:
        self.settings = settings
        self.engine = engine
        self.registry = JobRegistry(engine)
        self.batcher = PointBatcher(
            influx,
            rp=settings.influx.raw_rp,
            batch_size=settings.ingest.batch_size,
            flush_interval=settings.ingest.flush_interval,
            max_buffered=settings.ingest.max_buffered_points,
        )
        self.coalescer = JobStateCoalescer(
            engine, interval=settings.ingest.state_flush_interval, on_statuses=self._refresh_statuses
        )
        self._background: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.batcher.start()
        self.coalescer.start()

    async def stop(self) -> None:
        """Graceful shutdown: every accepted point and state is written before the process exits."""
        await self.batcher.stop()
        await self.coalescer.stop()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _refresh_statuses(self, statuses: dict[str, str]) -> None:
        for job_id, status in statuses.items():
            entry = self.registry.get(job_id)
            if entry is not None and not entry.finishing:
                self.registry.set_status(job_id, status)

    async def entry(self, job_type: str, job_id: str) -> JobEntry:
        entry = self.registry.get(job_id)
        if entry is None:
            loaded = await to_thread.run_sync(self.registry.load, job_id)
            if loaded is None:
                raise IngestError(404, f"job {job_id!r} does not exist; create it with POST /api/v1/backups")
            entry = self.registry.put(loaded)
        if entry.job_type != job_type:
            raise IngestError(409, f"job {job_id!r} is a {entry.job_type} job, not a {job_type} job")
        if entry.finished:
            raise IngestError(409, f"job {job_id!r} has already finished ({entry.status})")
        return entry

    def _timestamp_ns(self, update: TelemetryUpdate, now_ns: int) -> int:
        if update.timestamp is None:
            return now_ns
        ts = update.timestamp
        ns = (int(ts.timestamp()) * 1_000_000 + ts.microsecond) * 1000
        if ns > now_ns + 300 * 10**9 or ns < now_ns - int(self.settings.ingest.max_timestamp_age * 1e9):
            raise IngestError(
                400,
                f"timestamp {ts.isoformat()} is outside the accepted window "
                f"(up to {self.settings.ingest.max_timestamp_age:.0f} s old, at most 300 s ahead)",
            )
        return ns

    def _line(self, entry: JobEntry, update: TelemetryUpdate, ts_ns: int, phase: str) -> str:
        return telemetry_line(
            entry.key(update.disk_index),
            bytes_transferred=update.bytes_transferred,
            total_bytes=update.total_bytes,
            transfer_speed_bps=update.transfer_speed_bps,
            progress_percent=update.progress_percent,
            current_phase=phase,
            worker_count=update.worker_count,
            timestamp_ns=ts_ns,
        )

    def _mirror_row(self, entry: JobEntry, update: TelemetryUpdate, at: datetime, phase: str) -> dict:
        return {
            "job_id": entry.job_id,
            "job_type": entry.job_type,
            "timestamp": at,
            "bytes_transferred": update.bytes_transferred,
            "total_bytes": update.total_bytes,
            "transfer_speed_bps": update.transfer_speed_bps,
            "progress_percent": round(update.progress_percent, 2),
            "current_phase": phase,
            "disk_index": update.disk_index,
            "worker_count": update.worker_count,
        }

    def accept_running(self, entry: JobEntry, update: TelemetryUpdate) -> None:
        """The hot path: memory only. Raises IngestError(503) when the point buffer is full."""
        now_ns = time.time_ns()
        ts_ns = self._timestamp_ns(update, now_ns)
        line = self._line(entry, update, ts_ns, update.current_phase)
        try:
            self.batcher.add(line)
        except BufferFull as exc:
            raise IngestError(503, f"telemetry buffer full, retry later: {exc}", retry_after=5) from exc
        if update.disk_index is None:
            self.coalescer.update_job(
                entry.job_id,
                JobState(
                    update.bytes_transferred,
                    update.total_bytes,
                    update.transfer_speed_bps,
                    update.progress_percent,
                    update.current_phase,
                    ts_ns,
                    ts_ns,
                ),
            )
        else:
            self.coalescer.update_disk(
                entry.job_id,
                update.disk_index,
                DiskState(update.bytes_transferred, update.total_bytes, update.progress_percent, update.status),
            )
        if entry.mirror_due(update.disk_index, self.settings.ingest.snapshot_interval, time.monotonic()):
            self.coalescer.mirror(self._mirror_row(entry, update, utc_naive(ts_ns), update.current_phase))

    async def submit(self, job_type: str, job_id: str, update: TelemetryUpdate) -> IngestResult:
        entry = await self.entry(job_type, job_id)
        if update.status in TERMINAL_STATUSES and update.disk_index is None:
            return await self.finish(entry, update)
        self.accept_running(entry, update)
        return IngestResult(202, {"job_id": job_id, "accepted": True})

    async def finish(self, entry: JobEntry, update: TelemetryUpdate) -> IngestResult:
        """A terminal update: its job's points are flushed and its state committed before answering."""
        entry.finishing = True
        try:
            now_ns = time.time_ns()
            ts_ns = self._timestamp_ns(update, now_ns)
            # The terminal point's phase is the final status: the last chart point says how it ended.
            line = self._line(entry, update, ts_ns, update.status)
            try:
                seq = self.batcher.add(line)
            except BufferFull as exc:
                raise IngestError(503, f"telemetry buffer full, retry later: {exc}", retry_after=5) from exc
            flushed = await self.batcher.wait_written(seq, self.settings.ingest.terminal_flush_timeout)
            pending = self.coalescer.take_job(entry.job_id)
            at = utc_naive(ts_ns)
            pending.mirror.append(self._mirror_row(entry, update, at, update.status))
            try:
                committed = await to_thread.run_sync(self._commit_terminal, entry, update, pending, at, flushed)
            except Exception as exc:
                log.exception("could not commit the terminal state of %s", entry.job_id)
                raise IngestError(503, f"could not record the end of job {entry.job_id!r}: {exc}", 5) from exc
            if not committed:
                fresh = await to_thread.run_sync(self.registry.load, entry.job_id)
                entry.status = fresh.status if fresh else "failed"
                raise IngestError(409, f"job {entry.job_id!r} has already finished ({entry.status})")
            self.registry.set_status(entry.job_id, update.status)
            if not flushed:
                self.batcher.on_written(seq, lambda: self._spawn(self._clear_pending(entry.job_id)))
            return IngestResult(
                200,
                {"job_id": entry.job_id, "status": update.status, "points_pending": not flushed},
            )
        finally:
            entry.finishing = False

    def _commit_terminal(
        self, entry: JobEntry, update: TelemetryUpdate, pending: PendingWrites, at: datetime, flushed: bool
    ) -> bool:
        first_at = min((utc_naive(s.first_at_ns) for s in pending.jobs.values()), default=at)
        with self.engine.connect() as conn:
            tx = conn.begin()
            write_pending(conn, pending)
            result = conn.execute(
                sql_update(backup_jobs)
                .where(backup_jobs.c.id == entry.job_id, backup_jobs.c.status.in_(("pending", "running")))
                .values(
                    status=update.status,
                    completed_at=at,
                    error_message=update.error_message,
                    bytes_transferred=update.bytes_transferred,
                    total_bytes=update.total_bytes,
                    transfer_speed_bps=update.transfer_speed_bps,
                    progress_percent=round(update.progress_percent, 2),
                    current_phase=update.status,
                    last_telemetry_at=at,
                    started_at=func.coalesce(backup_jobs.c.started_at, first_at),
                    telemetry_pending=not flushed,
                )
            )
            if result.rowcount == 0:
                tx.rollback()
                return False
            conn.execute(
                sql_update(backup_disks)
                .where(backup_disks.c.job_id == entry.job_id, backup_disks.c.status.in_(("pending", "running")))
                .values(status=update.status)
            )
            tx.commit()
        return True

    async def _clear_pending(self, job_id: str) -> None:
        def clear() -> None:
            with self.engine.begin() as conn:
                conn.execute(sql_update(backup_jobs).where(backup_jobs.c.id == job_id).values(telemetry_pending=False))

        try:
            await to_thread.run_sync(clear)
        except Exception:
            # The rollup rolls the job up after its grace period anyway; nothing is lost.
            log.exception("could not clear telemetry_pending of %s", job_id)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def submit_batch(self, items: list[BatchUpdate]) -> dict:
        accepted = 0
        rejected: list[dict] = []
        for index, item in enumerate(items):
            if index % 500 == 499:
                # A 10,000-item batch takes ~0.1 s of CPU; let other requests in meanwhile.
                await asyncio.sleep(0)
            try:
                await self.submit(item.job_type, item.job_id, item)
                accepted += 1
            except IngestError as exc:
                rejected.append({"index": index, "status": exc.status, "detail": exc.detail})
        return {"accepted": accepted, "rejected": rejected}
