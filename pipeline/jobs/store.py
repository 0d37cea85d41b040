"""JobStore: the one writer of `backup_jobs`, `backup_disks` and the snapshot mirror.

Every change to a job's row goes through here: creation, the telemetry state of a group commit
(with its terminal updates), the reaper, the rollup's summary or failure, and the purge mark.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, Row, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.exc import IntegrityError, OperationalError

from pipeline.clock import utc_now
from pipeline.db.tables import backup_disks, backup_jobs, job_telemetry_snapshots, machines
from pipeline.ingest.models import CreateBackup, server_job_id
from pipeline.jobs.vocabulary import ACTIVE_STATUSES, TERMINAL_STATUSES

__all__ = [
    "JobConflict",
    "JobStore",
    "Outcome",
    "RetryPolicy",
    "RollupClaim",
    "StateChange",
]

# MySQL/MariaDB error codes worth one more try of the same transaction.
_DEADLOCK, _LOCK_WAIT_TIMEOUT = 1213, 1205
_APPLY_ATTEMPTS = 4


class JobConflict(Exception):
    """A client-chosen backup_id that already exists."""


_EPOCH = datetime(1970, 1, 1)


@dataclass(slots=True)
class StateChange:
    """One accepted telemetry update, as it changes the job's row (and its disk's row)."""

    job_id: str
    job_type: str
    at_us: int
    """The update's time (the agent's, or the receive time) in microseconds since the epoch."""
    status: str
    disk_index: int | None
    bytes_transferred: int
    total_bytes: int
    transfer_speed_bps: int
    progress_percent: float
    current_phase: str
    worker_count: int | None = None
    error_message: str | None = None

    @property
    def at(self) -> datetime:
        """The update's time as the naive UTC datetime the columns hold."""
        return _EPOCH + timedelta(microseconds=self.at_us)

    @property
    def terminal(self) -> bool:
        """A job-level update that ends the job (a disk that completes does not end its job)."""
        return self.disk_index is None and self.status in TERMINAL_STATUSES


class Outcome(NamedTuple):
    """What became of one StateChange: an HTTP status and the job's status afterwards."""

    code: int
    """202 accepted (running), 200 terminal recorded (or already recorded the same way), 409 the job had
    already finished, 404 the job does not exist."""
    job_status: str


@dataclass(frozen=True)
class RetryPolicy:
    """How a job whose rollup fails is retried: exponential back-off, then set aside."""

    max_attempts: int = 5
    base_delay: float = 30.0
    max_delay: float = 3600.0

    def delay(self, attempt: int) -> float:
        return min(self.base_delay * 2 ** max(attempt - 1, 0), self.max_delay)


# --- the group commit's transaction -------------------------------------------------------------

# Times are read as microseconds since the epoch: comparing integers is all the decisions need, and
# PyMySQL parses an integer many times faster than a DATETIME.
_US = "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', {})"
_LOCK_JOBS = (
    f"SELECT id, status, {_US.format('started_at')}, {_US.format('last_telemetry_at')}, "
    f"{_US.format('last_snapshot_at')} "
    "FROM backup_jobs WHERE id IN ({}) ORDER BY id FOR UPDATE"
)
# Many rows' new values in one statement: an upsert whose insert branch cannot happen (every row was
# just locked by _LOCK_JOBS, so it exists and stays), hence the placeholder values of the NOT NULL
# columns it never writes (sent as parameters too: PyMySQL batches many rows into one statement only
# when VALUES holds nothing but placeholders). The values are final, decided under the locks.
_WRITE_JOBS = (
    "INSERT INTO backup_jobs (id, vm_name, repository_id, backup_type, created_at, status, started_at, "
    "completed_at, error_message, bytes_transferred, total_bytes, transfer_speed_bps, progress_percent, "
    "current_phase, last_telemetry_at, last_snapshot_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
    "status = VALUES(status), started_at = COALESCE(VALUES(started_at), started_at), "
    "completed_at = COALESCE(VALUES(completed_at), completed_at), "
    "error_message = COALESCE(VALUES(error_message), error_message), "
    "bytes_transferred = VALUES(bytes_transferred), total_bytes = VALUES(total_bytes), "
    "transfer_speed_bps = VALUES(transfer_speed_bps), progress_percent = VALUES(progress_percent), "
    "current_phase = VALUES(current_phase), last_telemetry_at = VALUES(last_telemetry_at), "
    "last_snapshot_at = COALESCE(VALUES(last_snapshot_at), last_snapshot_at)"
)
# A job whose changes were all older than its state (a late update) still starts, or takes a snapshot.
_TOUCH_JOB = (
    "UPDATE backup_jobs SET status = %s, started_at = COALESCE(%s, started_at), "
    "last_snapshot_at = COALESCE(%s, last_snapshot_at) WHERE id = %s"
)
_LOCKED_DISKS = (
    "SELECT job_id, disk_index, size_bytes, bytes_transferred, progress_percent, status, "
    f"{_US.format('last_telemetry_at')}, {_US.format('last_snapshot_at')} FROM backup_disks WHERE job_id IN ({{}})"
)
_WRITE_DISKS = (
    "INSERT INTO backup_disks (job_id, disk_index, size_bytes, bytes_transferred, progress_percent, status, "
    "last_telemetry_at, last_snapshot_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
    "size_bytes = VALUES(size_bytes), bytes_transferred = VALUES(bytes_transferred), "
    "progress_percent = VALUES(progress_percent), status = VALUES(status), "
    "last_telemetry_at = VALUES(last_telemetry_at), last_snapshot_at = VALUES(last_snapshot_at)"
)
_MIRROR = (
    "INSERT INTO job_telemetry_snapshots (job_id, job_type, timestamp, bytes_transferred, total_bytes, "
    "transfer_speed_bps, progress_percent, current_phase, disk_index, worker_count) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def _placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


def _moment(us: int | None) -> str | None:
    """Microseconds since the epoch as DATETIME(6) text (cheaper for PyMySQL to send than a datetime)."""
    return None if us is None else str(_EPOCH + timedelta(microseconds=us))


def _mirror_row(c: StateChange, phase: str) -> tuple:
    return (
        c.job_id, c.job_type, c.at, c.bytes_transferred, c.total_bytes, c.transfer_speed_bps,
        round(c.progress_percent, 2), phase, c.disk_index, c.worker_count,
    )  # fmt: skip


def _due(last_us: int | None, at_us: int, interval_us: int) -> bool:
    return last_us is None or at_us - last_us >= interval_us


class _JobPlan:
    """The new values of one locked job row, decided from the changes of one commit."""

    __slots__ = ("job_id", "status", "started_us", "state_us", "snapshot_us", "started", "state", "ended", "touch")

    def __init__(self, row: Sequence) -> None:
        self.job_id, status, self.started_us, self.state_us, self.snapshot_us = row
        self.status = "running" if status == "pending" else status
        self.touch = status == "pending"
        self.started = False
        self.state: StateChange | None = None
        self.ended: StateChange | None = None

    def take(self, c: StateChange, interval_us: int, mirror: list[tuple]) -> None:
        # started_at is the job's earliest point, whenever it arrives: the rollup reads its points
        # between started_at and its end, which keeps a reader away from shards of other days.
        if self.started_us is None or c.at_us < self.started_us:
            self.started_us = c.at_us
            self.started = self.touch = True
        if c.disk_index is not None:
            return
        if c.terminal:
            self.ended = self.state = c
            self.status = c.status
            mirror.append(_mirror_row(c, c.status))
            return
        if _due(self.snapshot_us, c.at_us, interval_us):
            self.snapshot_us = c.at_us
            self.touch = True
            mirror.append(_mirror_row(c, c.current_phase))
        if self.state_us is None or c.at_us >= self.state_us:
            self.state_us = c.at_us
            self.state = c

    def row(self, snapshot_changed: bool) -> tuple:
        c = self.state
        assert c is not None
        end = self.ended
        return (
            self.job_id, "", "", "", "1970-01-01", self.status, _moment(self.started_us) if self.started else None,
            _moment(end.at_us) if end else None, end.error_message if end else None,
            c.bytes_transferred, c.total_bytes, c.transfer_speed_bps, round(c.progress_percent, 2),
            c.status if end else c.current_phase, _moment(c.at_us),
            _moment(self.snapshot_us) if snapshot_changed else None,
        )  # fmt: skip


class JobStore:
    """Writes of job rows. Blocking (SQLAlchemy + PyMySQL): async callers run it in a thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- creation ----------------------------------------------------------------------------

    def create(self, body: CreateBackup, now: datetime | None = None) -> str:
        """Insert a pending job, its disks, and upsert its machine, in one transaction; returns the id.

        Server-made ids are `{job_type}-{vm}-{unix_seconds}`; two jobs for one VM in the same second
        get a numeric suffix. A client-chosen id that exists raises JobConflict.
        """
        indexes = [d.disk_index for d in body.disks]
        if len(set(indexes)) != len(indexes):
            raise ValueError("disks: each disk_index may appear once")
        now = (now or datetime.now(UTC)).replace(tzinfo=None)
        base_id = body.backup_id or server_job_id(body.job_type, body.vm_name, int(now.timestamp()))
        total = sum(d.size_bytes for d in body.disks)
        for attempt in range(1, 100):
            job_id = base_id if attempt == 1 else f"{base_id}-{attempt}"
            try:
                with self.engine.begin() as conn:
                    self._insert_job(conn, job_id, body, total, now)
                return job_id
            except IntegrityError as exc:
                if body.backup_id is not None:
                    raise JobConflict(f"backup_id {job_id!r} already exists") from exc
        raise JobConflict(f"could not find a free id near {base_id!r}")  # pragma: no cover - 99 in one second

    @staticmethod
    def _insert_job(conn: Connection, job_id: str, body: CreateBackup, total: int, now: datetime) -> None:
        conn.execute(
            insert(backup_jobs).values(
                id=job_id,
                vm_name=body.vm_name,
                repository_id=body.repository_id,
                backup_type=body.backup_type,
                job_type=body.job_type,
                status="pending",
                created_at=now,
                total_bytes=total,
            )
        )
        if body.disks:
            conn.execute(
                insert(backup_disks),
                [{"job_id": job_id, "disk_index": d.disk_index, "size_bytes": d.size_bytes} for d in body.disks],
            )
        details = body.machine
        values = {
            "vm_name": body.vm_name,
            "cpu_count": details.cpu_count if details else None,
            "memory_mb": details.memory_mb if details else None,
            "os_type": details.os_type if details else None,
            "protection_flow": details.protection_flow if details else None,
            "disk_count": len(body.disks) or None,
            "repository_id": body.repository_id,
            "created_at": now,
            "updated_at": now,
        }
        stmt = mysql_insert(machines).values(values)
        # Known details are kept when a later job does not repeat them.
        keep = {
            name: func.coalesce(stmt.inserted[name], machines.c[name])
            for name in ("cpu_count", "memory_mb", "os_type", "protection_flow", "disk_count")
        }
        conn.execute(stmt.on_duplicate_key_update(repository_id=stmt.inserted.repository_id, updated_at=now, **keep))

    # --- telemetry state (the group commit) -------------------------------------------------------

    def apply(self, changes: Sequence[StateChange], snapshot_interval: float) -> list[Outcome]:
        """Apply one group commit's changes in one transaction; one Outcome per change, in order.

        The caller has already written the changes' points to InfluxDB. The job rows are locked
        first, so the status each Outcome reports is the status at commit: a job that another
        process finished before this transaction gets 409, and a terminal update committed after it
        finds these points already in InfluxDB. State never goes backwards: a change older than the
        row's `last_telemetry_at` is acknowledged (its point is kept) but does not overwrite it.
        """
        for attempt in range(1, _APPLY_ATTEMPTS + 1):
            try:
                with self.engine.connect() as conn, conn.begin():
                    return self._apply(conn, changes, snapshot_interval)
            except OperationalError as exc:
                code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
                if code in (_DEADLOCK, _LOCK_WAIT_TIMEOUT) and attempt < _APPLY_ATTEMPTS:
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _apply(self, conn: Connection, changes: Sequence[StateChange], interval: float) -> list[Outcome]:
        by_job: dict[str, list[int]] = {}
        for i, c in enumerate(changes):
            by_job.setdefault(c.job_id, []).append(i)
        ids = sorted(by_job)
        # Locks are taken in primary-key order, so two commits touching the same jobs cannot deadlock.
        rows = {r[0]: r for r in conn.exec_driver_sql(_LOCK_JOBS.format(_placeholders(len(ids))), tuple(ids))}
        interval_us = int(interval * 1_000_000)
        outcomes: list[Outcome | None] = [None] * len(changes)
        writes: list[tuple] = []
        touches: list[tuple] = []
        mirror: list[tuple] = []
        disk_changes: list[StateChange] = []
        ended: list[tuple[str, str]] = []
        for job_id, indexes in by_job.items():
            row = rows.get(job_id)
            if row is None:
                for i in indexes:
                    outcomes[i] = Outcome(404, "")
                continue
            if row[1] in TERMINAL_STATUSES:
                for i in indexes:
                    c = changes[i]
                    outcomes[i] = Outcome(200 if c.terminal and c.status == row[1] else 409, row[1])
                continue
            plan = _JobPlan(row)
            snapshot_before = plan.snapshot_us
            for c in sorted(self._decide(changes, indexes, outcomes), key=lambda c: c.at_us):
                plan.take(c, interval_us, mirror)
                if c.disk_index is not None:
                    disk_changes.append(c)
            if plan.ended is not None:
                ended.append((job_id, plan.status))
            if plan.state is not None:
                writes.append(plan.row(plan.snapshot_us != snapshot_before))
            elif plan.touch:
                snapshot = _moment(plan.snapshot_us) if plan.snapshot_us != snapshot_before else None
                touches.append((plan.status, _moment(plan.started_us) if plan.started else None, snapshot, job_id))
        if writes:
            conn.exec_driver_sql(_WRITE_JOBS, writes)
        for touch in touches:
            conn.exec_driver_sql(_TOUCH_JOB, touch)
        if disk_changes:
            mirror.extend(self._apply_disks(conn, disk_changes, interval_us))
        for job_id, status in ended:
            conn.execute(
                update(backup_disks)
                .where(backup_disks.c.job_id == job_id, backup_disks.c.status.in_(ACTIVE_STATUSES))
                .values(status=status)
            )
        if mirror:
            conn.exec_driver_sql(_MIRROR, mirror)
        return outcomes  # type: ignore[return-value]

    @staticmethod
    def _decide(changes: Sequence[StateChange], indexes: list[int], outcomes: list) -> list[StateChange]:
        """Outcomes of one running job's changes; returns the accepted ones.

        The first terminal change (in arrival order) ends the job. Another terminal change with the
        same status is the same end (200), with another status 409; a running change stamped after
        the end is 409 too.
        """
        end = next((changes[i] for i in indexes if changes[i].terminal), None)
        accepted = []
        for i in indexes:
            c = changes[i]
            if end is None:
                outcomes[i] = Outcome(202, "running")
                accepted.append(c)
            elif c is end:
                outcomes[i] = Outcome(200, c.status)
                accepted.append(c)
            elif c.terminal:
                outcomes[i] = Outcome(200 if c.status == end.status else 409, end.status)
            elif c.at_us > end.at_us:
                outcomes[i] = Outcome(409, end.status)
            else:
                outcomes[i] = Outcome(202, end.status)
                accepted.append(c)
        return accepted

    def _apply_disks(self, conn: Connection, changes: list[StateChange], interval_us: int) -> list[tuple]:
        """Upsert the disks' rows (their job rows are locked by the caller); returns their mirror rows."""
        jobs = sorted({c.job_id for c in changes})
        current = {
            (r[0], r[1]): list(r)
            for r in conn.exec_driver_sql(_LOCKED_DISKS.format(_placeholders(len(jobs))), tuple(jobs))
        }
        mirror: list[tuple] = []
        touched: dict[tuple[str, int], list] = {}
        for c in changes:
            key = (c.job_id, c.disk_index)
            row = touched.get(key) or current.get(key) or [c.job_id, c.disk_index, 0, 0, 0, "pending", None, None]
            if _due(row[7], c.at_us, interval_us):
                row[7] = c.at_us
                mirror.append(_mirror_row(c, c.current_phase))
            if row[6] is None or c.at_us >= row[6]:
                row[2:7] = [c.total_bytes, c.bytes_transferred, round(c.progress_percent, 2), c.status, c.at_us]
            touched[key] = row
        conn.exec_driver_sql(_WRITE_DISKS, [(*r[:6], _moment(r[6]), _moment(r[7])) for r in touched.values()])
        return mirror

    # --- the scheduler's writes --------------------------------------------------------------------

    def reap(self, stale_after: float) -> list[str]:
        """Fail every running job with no telemetry for `stale_after` seconds; returns their ids."""
        now = utc_now()
        cutoff = now - timedelta(seconds=stale_after)
        last_seen = func.coalesce(backup_jobs.c.last_telemetry_at, backup_jobs.c.started_at, backup_jobs.c.created_at)
        message = f"telemetry timeout: no telemetry for {stale_after:.0f} s"
        with self.engine.connect().execution_options(isolation_level="READ COMMITTED") as conn, conn.begin():
            stale = [
                row.id
                for row in conn.execute(
                    select(backup_jobs.c.id)
                    .where(backup_jobs.c.status == "running", last_seen < cutoff)
                    .order_by(backup_jobs.c.id)
                    .with_for_update(skip_locked=True)
                )
            ]
            if not stale:
                return []
            conn.execute(
                update(backup_jobs)
                .where(backup_jobs.c.id.in_(stale), backup_jobs.c.status == "running")
                .values(status="failed", error_message=message, completed_at=now)
            )
            conn.execute(
                update(backup_disks)
                .where(backup_disks.c.job_id.in_(stale), backup_disks.c.status.in_(ACTIVE_STATUSES))
                .values(status="failed")
            )
        return stale

    @contextmanager
    def claim_rollup(self, columns: Sequence[Any], skip: Sequence[str] = ()) -> Iterator[RollupClaim | None]:
        """Claim the oldest finished job due for a rollup, locked until the block ends (then committed).

        `FOR UPDATE SKIP LOCKED` under READ COMMITTED: other schedulers skip the claimed row, and once
        its summary is committed it no longer matches. Jobs waiting for a retry, or set aside after
        too many failures, are not claimed, so one bad job never blocks the others; `skip` names jobs
        this run already tried.
        """
        now = utc_now()
        with self.engine.connect().execution_options(isolation_level="READ COMMITTED") as conn, conn.begin():
            row = conn.execute(
                select(*columns)
                .where(
                    backup_jobs.c.status.in_(TERMINAL_STATUSES),
                    backup_jobs.c.rolled_up_at.is_(None),
                    backup_jobs.c.rollup_failed_at.is_(None),
                    or_(backup_jobs.c.rollup_next_attempt_at.is_(None), backup_jobs.c.rollup_next_attempt_at <= now),
                    *([backup_jobs.c.id.not_in(list(skip))] if skip else []),
                )
                .order_by(backup_jobs.c.completed_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            yield None if row is None else RollupClaim(conn, row)

    def mark_purged(self, job_id: str) -> None:
        """The raw telemetry of a rolled-up job is gone: delete its mirror rows and say so."""
        with self.engine.begin() as conn:
            conn.execute(delete(job_telemetry_snapshots).where(job_telemetry_snapshots.c.job_id == job_id))
            conn.execute(update(backup_jobs).where(backup_jobs.c.id == job_id).values(purged_at=utc_now()))

    def unpurged(self, columns: Sequence[Any], limit: int) -> list[Row]:
        """Rolled-up jobs whose purge has not finished (a crash, an outage)."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(*columns)
                .where(backup_jobs.c.rolled_up_at.is_not(None), backup_jobs.c.purged_at.is_(None))
                .limit(limit)
            ).all()

    def purged_among(self, job_ids: Sequence[str]) -> list[str]:
        """Which of these jobs have been rolled up and purged."""
        if not job_ids:
            return []
        with self.engine.connect() as conn:
            return [
                row.id
                for row in conn.execute(
                    select(backup_jobs.c.id).where(
                        backup_jobs.c.id.in_(bindparam("ids", expanding=True)), backup_jobs.c.purged_at.is_not(None)
                    ),
                    {"ids": list(job_ids)},
                )
            ]


class RollupClaim:
    """A claimed job inside its locking transaction: save the summary, or record why it failed."""

    def __init__(self, conn: Connection, row: Row) -> None:
        self.conn = conn
        self.job = row

    def save(self, metrics: dict) -> None:
        self.conn.execute(
            update(backup_jobs)
            .where(backup_jobs.c.id == self.job.id)
            .values(
                performance_metrics=metrics,
                avg_speed_bps=metrics["avg_speed_bps"],
                rolled_up_at=utc_now(),
                rollup_next_attempt_at=None,
            )
        )

    def fail(self, error: str, policy: RetryPolicy) -> tuple[int, bool]:
        """Count a failed attempt; after `policy.max_attempts` the job is set aside. Returns (attempts, gave_up)."""
        attempts = int(self.job.rollup_attempts or 0) + 1
        gave_up = attempts >= policy.max_attempts
        now = utc_now()
        self.conn.execute(
            update(backup_jobs)
            .where(backup_jobs.c.id == self.job.id)
            .values(
                rollup_attempts=attempts,
                rollup_last_error=error[:4000],
                rollup_next_attempt_at=None if gave_up else now + timedelta(seconds=policy.delay(attempts)),
                rollup_failed_at=now if gave_up else None,
            )
        )
        return attempts, gave_up
