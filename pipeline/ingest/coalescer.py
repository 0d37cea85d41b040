"""JobStateCoalescer: the latest state per job and disk, and the snapshot mirror rows, flushed in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime

from anyio import to_thread
from sqlalchemy import Connection, Engine, bindparam, insert, select, text
from sqlalchemy.dialects.mysql import insert as mysql_insert

from pipeline.db.tables import backup_disks, backup_jobs, job_telemetry_snapshots

__all__ = ["DiskState", "JobState", "JobStateCoalescer", "PendingWrites"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class JobState:
    """The current-state columns of `backup_jobs` after one update."""

    bytes_transferred: int
    total_bytes: int
    transfer_speed_bps: int
    progress_percent: float
    current_phase: str
    at: datetime
    first_at: datetime


@dataclass(slots=True)
class DiskState:
    """The current-state columns of one `backup_disks` row."""

    bytes_transferred: int
    total_bytes: int
    progress_percent: float
    status: str


@dataclass(slots=True)
class PendingWrites:
    """What one flush writes: taken out of the coalescer at once, so new updates go to a fresh set."""

    jobs: dict[str, JobState]
    disks: dict[tuple[str, int], DiskState]
    mirror: list[dict]

    def __bool__(self) -> bool:
        return bool(self.jobs or self.disks or self.mirror)


def _job_update_sql(count: int) -> str:
    # One statement for many jobs: a derived table of the new values joined to backup_jobs.
    # Only pending/running rows change, so a late flush never overwrites a finished job.
    rows = " UNION ALL ".join(
        f"SELECT :id{i} AS id, :bt{i} AS bt, :tb{i} AS tb, :sp{i} AS sp, :pp{i} AS pp, :ph{i} AS ph, "
        f"CAST(:at{i} AS DATETIME(6)) AS at, CAST(:fa{i} AS DATETIME(6)) AS fa"
        for i in range(count)
    )
    return (
        f"UPDATE backup_jobs AS b JOIN ({rows}) AS v ON b.id = v.id "
        "SET b.bytes_transferred = v.bt, b.total_bytes = v.tb, b.transfer_speed_bps = v.sp, "
        "b.progress_percent = v.pp, b.current_phase = v.ph, b.last_telemetry_at = v.at, "
        "b.started_at = COALESCE(b.started_at, v.fa), b.status = 'running' "
        "WHERE b.status IN ('pending', 'running')"
    )


def write_pending(conn: Connection, pending: PendingWrites) -> dict[str, str]:
    """Write one set of pending state; returns the current status of every job touched."""
    touched: set[str] = set()
    if pending.jobs:
        params: dict[str, object] = {}
        for i, (job_id, s) in enumerate(pending.jobs.items()):
            params |= {
                f"id{i}": job_id,
                f"bt{i}": s.bytes_transferred,
                f"tb{i}": s.total_bytes,
                f"sp{i}": s.transfer_speed_bps,
                f"pp{i}": round(s.progress_percent, 2),
                f"ph{i}": s.current_phase,
                f"at{i}": s.at,
                f"fa{i}": s.first_at,
            }
        conn.execute(text(_job_update_sql(len(pending.jobs))), params)
        touched.update(pending.jobs)
    if pending.disks:
        rows = [
            {
                "job_id": job_id,
                "disk_index": disk_index,
                "size_bytes": d.total_bytes,
                "bytes_transferred": d.bytes_transferred,
                "progress_percent": round(d.progress_percent, 2),
                "status": d.status,
            }
            for (job_id, disk_index), d in pending.disks.items()
        ]
        stmt = mysql_insert(backup_disks).values(rows)
        conn.execute(
            stmt.on_duplicate_key_update(
                size_bytes=stmt.inserted.size_bytes,
                bytes_transferred=stmt.inserted.bytes_transferred,
                progress_percent=stmt.inserted.progress_percent,
                status=stmt.inserted.status,
            )
        )
        touched.update(job_id for job_id, _ in pending.disks)
    if pending.mirror:
        conn.execute(insert(job_telemetry_snapshots), pending.mirror)
    if not touched:
        return {}
    statuses = conn.execute(
        select(backup_jobs.c.id, backup_jobs.c.status).where(
            backup_jobs.c.id.in_(bindparam("ids", expanding=True))
        ),
        {"ids": sorted(touched)},
    )
    return {row.id: row.status for row in statuses}


class JobStateCoalescer:
    """Keeps only the last state per job and disk; a background task writes them every interval.

    A failed flush is merged back (newer values win) and retried, so a MariaDB restart costs
    freshness, not data.
    """

    def __init__(self, engine: Engine, *, interval: float, on_statuses=None) -> None:
        self.engine = engine
        self.interval = interval
        self.on_statuses = on_statuses
        self._pending = PendingWrites({}, {}, [])
        self._task: asyncio.Task | None = None
        self._closing = asyncio.Event()
        self.last_error: str | None = None
        self._lock = asyncio.Lock()

    def update_job(self, job_id: str, state: JobState) -> None:
        previous = self._pending.jobs.get(job_id)
        if previous is not None:
            state.first_at = previous.first_at
        self._pending.jobs[job_id] = state

    def update_disk(self, job_id: str, disk_index: int, state: DiskState) -> None:
        self._pending.disks[(job_id, disk_index)] = state

    def mirror(self, row: dict) -> None:
        self._pending.mirror.append(row)

    @property
    def backlog(self) -> int:
        return len(self._pending.jobs) + len(self._pending.disks) + len(self._pending.mirror)

    def take_job(self, job_id: str) -> PendingWrites:
        """Remove and return what is pending for one job (a terminal update writes it itself)."""
        state = self._pending.jobs.pop(job_id, None)
        jobs = {job_id: state} if state is not None else {}
        disks = {k: v for k, v in self._pending.disks.items() if k[0] == job_id}
        for k in disks:
            del self._pending.disks[k]
        mirror = [row for row in self._pending.mirror if row["job_id"] == job_id]
        if mirror:
            self._pending.mirror = [row for row in self._pending.mirror if row["job_id"] != job_id]
        return PendingWrites(jobs, disks, mirror)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="state-coalescer")

    async def stop(self) -> None:
        # Not cancelled: a flush cancelled mid-write would lose what it had taken out.
        self._closing.set()
        if self._task is not None:
            await self._task
        await self.flush()

    async def flush(self) -> bool:
        async with self._lock:
            pending, self._pending = self._pending, PendingWrites({}, {}, [])
            if not pending:
                return True
            try:
                statuses = await to_thread.run_sync(self._write, pending)
            except Exception as exc:  # keep everything for the next attempt
                self._merge_back(pending)
                if self.last_error is None:
                    log.warning("could not write job state to MySQL, will retry: %s", exc)
                self.last_error = str(exc)
                return False
            self.last_error = None
            if self.on_statuses is not None:
                self.on_statuses(statuses)
            return True

    def _write(self, pending: PendingWrites) -> dict[str, str]:
        with self.engine.begin() as conn:
            return write_pending(conn, pending)

    def _merge_back(self, failed: PendingWrites) -> None:
        for job_id, state in failed.jobs.items():
            newer = self._pending.jobs.get(job_id)
            if newer is None:
                self._pending.jobs[job_id] = state
            else:
                newer.first_at = state.first_at
        for key, state in failed.disks.items():
            self._pending.disks.setdefault(key, state)
        self._pending.mirror[:0] = failed.mirror

    async def _run(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.interval)
            await self.flush()
