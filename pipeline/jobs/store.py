"""JobStore: the one writer of `backup_jobs`, `backup_disks` and the snapshot mirror.

Every change to a job's row goes through here: creation, the telemetry state of a group commit
(with its terminal updates), the reaper, the rollup's summary or failure, and the purge mark.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncmy.errors import OperationalError as AsyncOperationalError
from asyncmy.pool import Pool
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.exc import IntegrityError

from pipeline.clock import utc_now
from pipeline.db.tables import backup_disks, backup_jobs, job_disk_charts, job_telemetry_snapshots, machines
from pipeline.ingest.models import CreateBackup, server_job_id
from pipeline.insight.recent_runs import recent_runs
from pipeline.insight.risk import HistoryRisk, assess_history
from pipeline.jobs.state import (
    END_DISKS,
    END_MACHINE,
    LOCK_DISKS,
    LOCK_JOBS,
    MIRROR,
    TOUCH_JOB,
    WRITE_DISKS,
    WRITE_JOBS,
    Outcome,
    StateChange,
    placeholders,
    plan_commit,
    plan_disks,
)
from pipeline.jobs.vocabulary import ACTIVE_STATUSES, TERMINAL_STATUSES

__all__ = [
    "KEEP_UNMARKED",
    "JobConflict",
    "JobStore",
    "Outcome",
    "RetryPolicy",
    "RollupClaim",
    "StateChange",
]

# MySQL/MariaDB error codes worth another try of the same transaction: a deadlock or lock wait, and a
# pooled connection the server closed meanwhile (a restart). Trying again is safe even if a broken
# connection had committed: the same changes find their own values and change nothing.
_DEADLOCK, _LOCK_WAIT_TIMEOUT = 1213, 1205
_CONNECTION_LOST = (2006, 2013)
_APPLY_ATTEMPTS = 4

log = logging.getLogger(__name__)

KEEP_UNMARKED = {"external_change_at": backup_jobs.c.external_change_at}
"""Values of every UPDATE of `backup_jobs` here: a write that names `external_change_at` (setting it to
itself) is not marked by the database's ON UPDATE, so only writers other than this store mark rows."""


class JobConflict(Exception):
    """A client-chosen backup_id that already exists."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a job whose rollup fails is retried: exponential back-off, then set aside."""

    max_attempts: int = 5
    base_delay: float = 30.0
    max_delay: float = 3600.0

    def delay(self, attempt: int) -> float:
        return min(self.base_delay * 2 ** max(attempt - 1, 0), self.max_delay)


class JobStore:
    """Writes of job rows. Blocking (SQLAlchemy + PyMySQL; async callers run these in a thread), but for
    `apply`, the group commit, which is async on its own pool (asyncmy) in the API process."""

    def __init__(self, engine: Engine, pool: Pool | None = None) -> None:
        self.engine = engine
        self.pool = pool

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
                external_change_at=None,
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
            "total_jobs": 1,
            "last_job_id": job_id,
            "last_job_at": now,
        }
        stmt = mysql_insert(machines).values(values)
        m, new = machines.c, stmt.inserted
        # Known details are kept when a later job does not repeat them.
        keep = [
            (name, func.coalesce(new[name], m[name]))
            for name in ("cpu_count", "memory_mb", "os_type", "protection_flow", "disk_count")
        ]
        newer = or_(m.last_job_at.is_(None), new.last_job_at >= m.last_job_at)
        # A list, not keywords: MySQL applies these left to right, and last_job_id must be decided
        # against last_job_at before that changes.
        updates = [
            ("repository_id", new.repository_id),
            ("updated_at", now),
            *keep,
            ("total_jobs", m.total_jobs + 1),
            ("last_job_id", case((newer, new.last_job_id), else_=m.last_job_id)),
            ("last_job_at", case((newer, new.last_job_at), else_=m.last_job_at)),
        ]
        conn.execute(stmt.on_duplicate_key_update(updates))

    # --- telemetry state (the group commit) -------------------------------------------------------

    async def apply(
        self,
        changes: Sequence[StateChange],
        snapshot_interval: float,
        durable: asyncio.Future | None = None,
    ) -> list[Outcome]:
        """Apply one group commit's changes in one transaction; one Outcome per change, in order.

        The changes' points are in InfluxDB before the transaction commits: the caller has written
        them already, or `durable` is that write under way (a task). Then the statements run meanwhile, and
        the transaction commits only once `durable` has succeeded (if it raises, the transaction is
        rolled back and its error raised): the statements' round trips overlap the write, and nothing
        is visible to anyone before the points are stored. The job rows are locked
        first, so the status each Outcome reports is the status at commit: a job that another
        process finished before this transaction gets 409, and a terminal update committed after it
        finds these points already in InfluxDB. State never goes backwards: a change older than the
        row's `last_telemetry_at` is acknowledged (its point is kept) but does not overwrite it.

        Runs on the event loop (asyncmy): the hot path of every update, kept off threads so that it
        never waits for the interpreter lock behind request handling.
        """
        if self.pool is None:
            raise RuntimeError("JobStore.apply needs the async pool (JobStore(engine, pool=...))")
        interval_us = int(snapshot_interval * 1_000_000)
        # A server restart leaves every pooled connection dead: each failed try discards its own, so
        # after at most the pool's size of tries a fresh one is used (or MySQL is down: 2003, raised).
        attempts = max(_APPLY_ATTEMPTS, self.pool.maxsize + 1)
        for attempt in range(1, attempts + 1):
            try:
                return await self._apply(changes, interval_us, durable)
            except AsyncOperationalError as exc:
                code = exc.args[0] if exc.args else None
                if code not in (*_CONNECTION_LOST, _DEADLOCK, _LOCK_WAIT_TIMEOUT) or attempt == attempts:
                    raise
                log.info("group commit retried after MySQL error %s: %s", code, exc)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _apply(
        self, changes: Sequence[StateChange], interval_us: int, durable: asyncio.Future | None
    ) -> list[Outcome]:
        ids = sorted({c.job_id for c in changes})
        conn = await self.pool.acquire()
        try:
            await conn.begin()
            async with conn.cursor() as cur:
                await cur.execute(LOCK_JOBS.format(placeholders(len(ids))), ids)
                plan = plan_commit(changes, {r[0]: r for r in await cur.fetchall()}, interval_us)
                if plan.writes:
                    await cur.executemany(WRITE_JOBS, plan.writes)
                for touch in plan.touches:
                    await cur.execute(TOUCH_JOB, touch)
                if plan.disk_changes:
                    jobs = sorted({c.job_id for c in plan.disk_changes})
                    await cur.execute(LOCK_DISKS.format(placeholders(len(jobs))), jobs)
                    disk_rows, disk_mirror = plan_disks(plan.disk_changes, await cur.fetchall(), interval_us)
                    await cur.executemany(WRITE_DISKS, disk_rows)
                    plan.mirror.extend(disk_mirror)
                for ended in plan.ended:
                    await cur.execute(END_DISKS, (*ended, *ACTIVE_STATUSES))
                for machine in plan.machine_ends:
                    await cur.execute(END_MACHINE, machine)
                if plan.mirror:
                    await cur.executemany(MIRROR, plan.mirror)
            if durable is not None:
                # A second try after a lost connection finds the write done (or its error again).
                await durable
            await conn.commit()
        except BaseException:
            # The connection's state is unknown (a lost connection, a cancelled wait): never reuse it.
            conn.close()
            raise
        finally:
            self.pool.release(conn)
        return plan.outcomes

    # --- the scheduler's writes --------------------------------------------------------------------

    def reap(self, stale_after: float) -> list[str]:
        """Fail every running job the server has heard nothing from for `stale_after` seconds; returns their ids.

        Silence is judged on the server's clock only (`last_seen_at`, the database's time of the commit
        that last accepted an update; a job never heard from counts from its creation), never on the
        agent's timestamps: an agent that sends late or whose clock is behind keeps its job. The job ends
        at the agent's time of its last update (nothing invented: its duration stays on one clock), and
        the reason says how long the server heard nothing.
        """
        j = backup_jobs.c
        heard = func.coalesce(j.last_seen_at, j.created_at)
        silent_for = func.timestampdiff(literal_column("SECOND"), heard, func.utc_timestamp(literal_column("6")))
        cutoff = literal_column(f"UTC_TIMESTAMP(6) - INTERVAL {int(stale_after * 1_000_000)} MICROSECOND")
        with self.engine.connect().execution_options(isolation_level="READ COMMITTED") as conn, conn.begin():
            rows = conn.execute(
                select(j.id, j.vm_name, silent_for.label("silent_for"))
                .where(
                    j.status == "running",
                    # Both branches read the (status, last_seen_at) index.
                    or_(j.last_seen_at < cutoff, and_(j.last_seen_at.is_(None), j.created_at < cutoff)),
                )
                .order_by(j.id)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return []
            for vm_name in sorted({row.vm_name for row in rows}):
                failed = sum(1 for row in rows if row.vm_name == vm_name)
                conn.exec_driver_sql(END_MACHINE, (0, failed, 0, 0, None, None, None, vm_name))
            for row in rows:
                message = (
                    f"telemetry timeout: the server received no update from this job for {int(row.silent_for)} s "
                    f"(limit {stale_after:.0f} s)"
                )
                conn.execute(
                    update(backup_jobs)
                    .where(j.id == row.id, j.status == "running")
                    .values(
                        status="failed",
                        error_message=message,
                        completed_at=func.coalesce(j.last_telemetry_at, j.started_at, j.created_at),
                        ended_seen_at=func.utc_timestamp(literal_column("6")),
                        **KEEP_UNMARKED,
                    )
                )
            stale = [row.id for row in rows]
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
                # Read in completion order and stop at the first row it can lock: with another index the
                # optimizer may sort every candidate first, locking each, and then a second scheduler
                # finds none (migration 0012).
                .with_hint(backup_jobs, f"FORCE INDEX ({CLAIM_INDEX})")
            ).first()
            yield None if row is None else RollupClaim(conn, row)

    # --- reconciliation and imports ------------------------------------------------------------

    @staticmethod
    def write_machine_summaries(conn: Connection, writes: Sequence[dict]) -> None:
        """Set machines' derived counters to what their jobs say (`sendense reconcile`), in the caller's
        transaction, which holds these machines' rows locked; a machine known only from its jobs gets its
        row (`repository_id`, `created_at` of its first job)."""
        now = utc_now()
        rows = [
            {
                "repository_id": None,
                "created_at": now,
                **w,
                "updated_at": now,
            }
            for w in writes
        ]
        stmt = mysql_insert(machines)
        summary = ("total_jobs", "successful", "failed", "cancelled", "protected_bytes", "last_job_id")
        conn.execute(
            stmt.on_duplicate_key_update(
                {
                    **{name: stmt.inserted[name] for name in summary},
                    "last_job_at": stmt.inserted.last_job_at,
                    "last_success_at": stmt.inserted.last_success_at,
                    "updated_at": stmt.inserted.updated_at,
                }
            ),
            rows,
        )

    @staticmethod
    def insert_imported(conn: Connection, rows: Sequence[dict]) -> list[str]:
        """Insert imported job rows (validated `backup_jobs` values) whose ids are not taken; returns the ids
        inserted. The rows are this store's from now on: unmarked, so reconciling them is the caller's
        (it reconciles their machines in the same run)."""
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        taken = set(
            conn.execute(
                select(backup_jobs.c.id).where(backup_jobs.c.id.in_(bindparam("ids", expanding=True))), {"ids": ids}
            ).scalars()
        )
        new = [{**r, "external_change_at": None} for r in rows if r["id"] not in taken]
        if new:
            conn.execute(insert(backup_jobs), new)
        return [r["id"] for r in new]

    # --- failure risk ----------------------------------------------------------------------------------

    def assess_risk(self, vm_names: Sequence[str]) -> int:
        """Recompute these machines' failure risk from their last finished runs (after a rollup of one of
        their jobs); returns how many machines were written.

        Their rows are locked first and the runs read after, under READ COMMITTED: of two schedulers
        assessing one machine, the second reads what the first could not have seen, so the last write is
        never older than the runs it follows. Jobs are only read, never locked (a group commit locks a job,
        then its machine: no cycle)."""
        names = sorted(set(vm_names))
        if not names:
            return 0
        with self.engine.connect().execution_options(isolation_level="READ COMMITTED") as conn, conn.begin():
            locked = list(
                conn.execute(
                    select(machines.c.vm_name)
                    .where(machines.c.vm_name.in_(bindparam("names", expanding=True)))
                    .order_by(machines.c.vm_name)
                    .with_for_update(),
                    {"names": names},
                ).scalars()
            )
            runs = recent_runs(conn, locked)
            return self.write_risk(conn, {vm: assess_history(runs.get(vm, [])) for vm in locked})

    @staticmethod
    def write_risk(conn: Connection, assessed: dict[str, HistoryRisk]) -> int:
        """Set machines' failure-risk columns in the caller's transaction (which holds their rows locked)."""
        if not assessed:
            return 0
        now = utc_now()
        conn.execute(
            update(machines)
            .where(machines.c.vm_name == bindparam("vm"))
            .values(risk_logit=bindparam("logit"), risk_factors=bindparam("factors"), risk_assessed_at=bindparam("at")),
            [{"vm": vm, "logit": h.logit, "factors": h.as_dict(), "at": now} for vm, h in assessed.items()],
        )
        return len(assessed)

    def set_rpo(self, vm_name: str, rpo_seconds: int | None) -> bool:
        """Set (None: clear) a machine's own recovery-point objective; False if the machine is unknown."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(machines)
                .where(machines.c.vm_name == vm_name)
                .values(rpo_seconds=rpo_seconds, updated_at=utc_now())
            )
        return result.rowcount > 0

    def register_machine(self, vm_name: str, details: dict[str, Any], rpo: dict[str, int | None]) -> bool:
        """Register a machine to protect (never_backed_up watches it from now on) or update a known one:
        the details given (`cpu_count`, `memory_mb`, `os_type`, `protection_flow`, `repository_id`) are
        set and the others kept; `rpo` sets `rpo_seconds` when it names it (None: back to the default). Its
        job counters are left as they are. Returns True when the machine was not known before."""
        now = utc_now()
        given = {name: value for name, value in details.items() if value is not None}
        values = {"vm_name": vm_name, **given, **rpo, "created_at": now, "updated_at": now}
        stmt = mysql_insert(machines).values(values)
        updates = {name: stmt.inserted[name] for name in (*given, *rpo)} | {"updated_at": now}
        with self.engine.begin() as conn:
            known = conn.execute(select(machines.c.vm_name).where(machines.c.vm_name == vm_name)).first()
            conn.execute(stmt.on_duplicate_key_update(updates))
        return known is None

    def mark_purged(self, job_id: str) -> None:
        """The raw telemetry of a rolled-up job is gone: delete its mirror rows and say so."""
        with self.engine.begin() as conn:
            conn.execute(delete(job_telemetry_snapshots).where(job_telemetry_snapshots.c.job_id == job_id))
            conn.execute(
                update(backup_jobs).where(backup_jobs.c.id == job_id).values(purged_at=utc_now(), **KEEP_UNMARKED)
            )

    def mark_purged_many(self, job_ids: Sequence[str]) -> None:
        """`mark_purged` for several jobs, in one transaction."""
        with self.engine.begin() as conn:
            conn.execute(delete(job_telemetry_snapshots).where(job_telemetry_snapshots.c.job_id.in_(list(job_ids))))
            conn.execute(
                update(backup_jobs)
                .where(backup_jobs.c.id.in_(list(job_ids)))
                .values(purged_at=utc_now(), **KEEP_UNMARKED)
            )

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


CLAIM_INDEX = "ix_backup_jobs_rolled_up_at_completed_at"
"""The index the rollup's claim reads (pipeline/db/tables.py, migration 0012)."""


class RollupClaim:
    """A claimed job inside its locking transaction: save the summary, or record why it failed."""

    def __init__(self, conn: Connection, row: Row) -> None:
        self.conn = conn
        self.job = row

    def save(self, metrics: dict, disk_charts: dict[int, list[dict]] | None = None) -> None:
        """Commit the summary (and each disk's curve) with the claim."""
        if disk_charts:
            stmt = mysql_insert(job_disk_charts).values(
                [{"job_id": self.job.id, "disk_index": d, "chart_data": c} for d, c in disk_charts.items()]
            )
            self.conn.execute(stmt.on_duplicate_key_update(chart_data=stmt.inserted.chart_data))
        self.conn.execute(
            update(backup_jobs)
            .where(backup_jobs.c.id == self.job.id)
            .values(
                performance_metrics=metrics,
                avg_speed_bps=metrics["avg_speed_bps"],
                anomaly_count=len(metrics["anomalies"]) if "anomalies" in metrics else None,
                rolled_up_at=utc_now(),
                rollup_next_attempt_at=None,
                **KEEP_UNMARKED,
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
                **KEEP_UNMARKED,
            )
        )
        return attempts, gave_up
