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


@dataclass(slots=True)
class StateChange:
    """One accepted telemetry update, as it changes the job's row (and its disk's row)."""

    job_id: str
    job_type: str
    at: datetime
    """The update's time (the agent's, or the receive time), naive UTC."""
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

_JOB_COLUMNS = (
    "id, status, started_at, bytes_transferred, total_bytes, transfer_speed_bps, progress_percent, "
    "current_phase, last_telemetry_at, last_snapshot_at"
)
_DISK_COLUMNS = "job_id, disk_index, size_bytes, bytes_transferred, progress_percent, status, last_telemetry_at, " \
    "last_snapshot_at"  # fmt: skip

# The final values of many job rows land in a per-connection temporary table with one multi-row
# INSERT (PyMySQL escapes the values), then one UPDATE ... JOIN applies them. The rows are locked
# (SELECT ... FOR UPDATE) before their new values are computed, so no writer can interleave.
_STAGING_DDL = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS job_state_staging ("
    "id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL PRIMARY KEY, "
    "st VARCHAR(20) NOT NULL, sa DATETIME(6) NULL, ca DATETIME(6) NULL, em TEXT NULL, "
    "bt BIGINT NOT NULL, tb BIGINT NOT NULL, sp BIGINT NOT NULL, pp DECIMAL(5,2) NOT NULL, "
    "ph VARCHAR(100) CHARACTER SET utf8mb4 NULL, lt DATETIME(6) NULL, ls DATETIME(6) NULL)"
)
_STAGE = "INSERT INTO job_state_staging (id, st, sa, ca, em, bt, tb, sp, pp, ph, lt, ls) VALUES " \
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"  # fmt: skip
_APPLY = (
    "UPDATE backup_jobs AS b JOIN job_state_staging AS v ON b.id = v.id "
    "SET b.status = v.st, b.started_at = v.sa, b.completed_at = v.ca, "
    "b.error_message = COALESCE(v.em, b.error_message), b.bytes_transferred = v.bt, b.total_bytes = v.tb, "
    "b.transfer_speed_bps = v.sp, b.progress_percent = v.pp, b.current_phase = v.ph, "
    "b.last_telemetry_at = v.lt, b.last_snapshot_at = v.ls "
    "WHERE b.status IN ('pending', 'running')"
)
_DISKS = (
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


def _mirror_row(c: StateChange, phase: str) -> tuple:
    return (
        c.job_id, c.job_type, c.at, c.bytes_transferred, c.total_bytes, c.transfer_speed_bps,
        round(c.progress_percent, 2), phase, c.disk_index, c.worker_count,
    )  # fmt: skip


def _due(last: datetime | None, at: datetime, interval: float) -> bool:
    return last is None or (at - last).total_seconds() >= interval


class _JobPlan:
    """The final values of one job row, computed under its row lock from the changes of one commit."""

    __slots__ = ("row", "values", "changed")

    def __init__(self, row: Row) -> None:
        self.row = row
        self.values: dict[str, Any] = {
            "st": row.status if row.status != "pending" else "running",
            "sa": row.started_at,
            "ca": None,
            "em": None,
            "bt": row.bytes_transferred,
            "tb": row.total_bytes,
            "sp": row.transfer_speed_bps,
            "pp": row.progress_percent,
            "ph": row.current_phase,
            "lt": row.last_telemetry_at,
            "ls": row.last_snapshot_at,
        }
        self.changed = False

    def take(self, c: StateChange, phase: str) -> None:
        v = self.values
        v.update(bt=c.bytes_transferred, tb=c.total_bytes, sp=c.transfer_speed_bps, pp=round(c.progress_percent, 2))
        v.update(ph=phase, lt=c.at)
        self.changed = True

    def started(self, at: datetime) -> None:
        """A job starts with its earliest update."""
        if self.row.started_at is None and (self.values["sa"] is None or at < self.values["sa"]):
            self.values["sa"] = at
            self.changed = True

    def staged(self) -> tuple:
        v = self.values
        return (
            self.row.id, v["st"], v["sa"], v["ca"], v["em"], v["bt"], v["tb"], v["sp"], v["pp"], v["ph"], v["lt"],
            v["ls"],
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
        rows = {
            r.id: r
            for r in conn.exec_driver_sql(
                f"SELECT {_JOB_COLUMNS} FROM backup_jobs WHERE id IN ({_placeholders(len(ids))}) ORDER BY id "
                "FOR UPDATE",
                tuple(ids),
            )
        }
        outcomes: list[Outcome | None] = [None] * len(changes)
        plans: list[_JobPlan] = []
        mirror: list[tuple] = []
        disk_changes: list[StateChange] = []
        ended: list[tuple[str, str]] = []
        for job_id, indexes in by_job.items():
            row = rows.get(job_id)
            if row is None:
                for i in indexes:
                    outcomes[i] = Outcome(404, "")
                continue
            if row.status in TERMINAL_STATUSES:
                for i in indexes:
                    c = changes[i]
                    same = c.terminal and c.status == row.status
                    outcomes[i] = Outcome(200 if same else 409, row.status)
                continue
            plan = _JobPlan(row)
            accepted = self._decide(changes, indexes, outcomes)
            for c in sorted(accepted, key=lambda c: c.at):
                plan.started(c.at)
                if c.disk_index is not None:
                    disk_changes.append(c)
                elif c.terminal:
                    plan.take(c, c.status)
                    plan.values.update(st=c.status, ca=c.at, em=c.error_message)
                    mirror.append(_mirror_row(c, c.status))
                    ended.append((job_id, c.status))
                else:
                    if _due(plan.values["ls"], c.at, interval):
                        plan.values["ls"] = c.at
                        plan.changed = True
                        mirror.append(_mirror_row(c, c.current_phase))
                    if plan.values["lt"] is None or c.at >= plan.values["lt"]:
                        plan.take(c, c.current_phase)
            if plan.changed or row.status == "pending":
                plans.append(plan)
        if plans:
            self._ensure_staging(conn)
            conn.exec_driver_sql("DELETE FROM job_state_staging")
            conn.exec_driver_sql(_STAGE, [p.staged() for p in plans])
            conn.exec_driver_sql(_APPLY)
        if disk_changes:
            mirror.extend(self._apply_disks(conn, disk_changes, interval))
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
            elif c.at > end.at:
                outcomes[i] = Outcome(409, end.status)
            else:
                outcomes[i] = Outcome(202, end.status)
                accepted.append(c)
        return accepted

    def _apply_disks(self, conn: Connection, changes: list[StateChange], interval: float) -> list[tuple]:
        """Upsert the disks' rows (their job rows are locked by the caller); returns their mirror rows."""
        jobs = sorted({c.job_id for c in changes})
        current = {
            (r.job_id, r.disk_index): list(r)
            for r in conn.exec_driver_sql(
                f"SELECT {_DISK_COLUMNS} FROM backup_disks WHERE job_id IN ({_placeholders(len(jobs))})", tuple(jobs)
            )
        }
        mirror: list[tuple] = []
        touched: dict[tuple[str, int], list] = {}
        for c in changes:
            key = (c.job_id, c.disk_index)
            row = touched.get(key) or current.get(key) or [c.job_id, c.disk_index, 0, 0, 0, "pending", None, None]
            if _due(row[7], c.at, interval):
                row[7] = c.at
                mirror.append(_mirror_row(c, c.current_phase))
            if row[6] is None or c.at >= row[6]:
                row[2:7] = [c.total_bytes, c.bytes_transferred, round(c.progress_percent, 2), c.status, c.at]
            touched[key] = row
        conn.exec_driver_sql(_DISKS, [tuple(r) for r in touched.values()])
        return mirror

    @staticmethod
    def _ensure_staging(conn: Connection) -> None:
        # Temporary tables live as long as the database connection: create it once per connection.
        info = conn.connection.info
        if not info.get("job_state_staging"):
            conn.exec_driver_sql(_STAGING_DDL)
            info["job_state_staging"] = True

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
    def claim_rollup(self, columns: Sequence[Any]) -> Iterator[RollupClaim | None]:
        """Claim the oldest finished job due for a rollup, locked until the block ends (then committed).

        `FOR UPDATE SKIP LOCKED` under READ COMMITTED: other schedulers skip the claimed row, and once
        its summary is committed it no longer matches. Jobs waiting for a retry, or set aside after
        too many failures, are not claimed, so one bad job never blocks the others.
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
