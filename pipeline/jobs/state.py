"""What one group commit does to job rows: the changes, their outcomes, and the statements that apply them.

Pure: `plan_commit` and `plan_disks` decide, from the changes and the rows read under their locks,
what each change is answered and which values are written. `JobStore.apply` runs the statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from pipeline.jobs.vocabulary import ACTIVE_STATUSES, TERMINAL_STATUSES

__all__ = [
    "END_DISKS",
    "END_MACHINE",
    "LOCK_DISKS",
    "LOCK_JOBS",
    "MIRROR",
    "TOUCH_JOB",
    "WRITE_DISKS",
    "WRITE_JOBS",
    "CommitPlan",
    "Outcome",
    "StateChange",
    "machine_end",
    "placeholders",
    "plan_commit",
    "plan_disks",
]

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


# --- statements ------------------------------------------------------------------------------------

# Times are read as microseconds since the epoch: comparing integers is all the decisions need, and a
# driver parses an integer many times faster than a DATETIME.
_US = "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', {})"
LOCK_JOBS = (
    f"SELECT id, status, {_US.format('started_at')}, {_US.format('last_telemetry_at')}, "
    f"{_US.format('last_snapshot_at')}, vm_name FROM backup_jobs WHERE id IN ({{}}) ORDER BY id FOR UPDATE"
)
"""Locks the commit's job rows, in primary-key order (two commits on the same jobs cannot deadlock)."""
WRITE_JOBS = (
    "INSERT INTO backup_jobs (id, vm_name, repository_id, backup_type, created_at, status, started_at, "
    "completed_at, error_message, bytes_transferred, total_bytes, transfer_speed_bps, progress_percent, "
    "current_phase, last_telemetry_at, last_snapshot_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
    "status = VALUES(status), started_at = COALESCE(VALUES(started_at), started_at), "
    "ended_seen_at = COALESCE(ended_seen_at, IF(VALUES(completed_at) IS NULL, NULL, UTC_TIMESTAMP(6))), "
    "completed_at = COALESCE(VALUES(completed_at), completed_at), "
    "error_message = COALESCE(VALUES(error_message), error_message), "
    "progress_seen_at = IF(progress_seen_at IS NULL OR VALUES(bytes_transferred) > bytes_transferred, "
    "UTC_TIMESTAMP(6), progress_seen_at), "
    "bytes_transferred = VALUES(bytes_transferred), total_bytes = VALUES(total_bytes), "
    "transfer_speed_bps = VALUES(transfer_speed_bps), progress_percent = VALUES(progress_percent), "
    "current_phase = VALUES(current_phase), last_telemetry_at = VALUES(last_telemetry_at), "
    "last_seen_at = UTC_TIMESTAMP(6), last_snapshot_at = COALESCE(VALUES(last_snapshot_at), last_snapshot_at), "
    "external_change_at = external_change_at"
)
"""Many rows' new values in one statement: an upsert whose insert branch cannot happen (every row was
just locked, so it exists and stays), hence the placeholder values of the NOT NULL columns it never
writes (sent as parameters too: drivers batch many rows into one statement only when VALUES holds
nothing but placeholders). The values are final, decided under the locks. `last_seen_at` is the
database server's clock at the commit: one clock for every API process, which the reaper reads too.
Naming `external_change_at` keeps the database from marking the row as changed outside the job store
(see `KEEP_UNMARKED`). MySQL applies these assignments left to right, a column read on the right being
its new value once assigned: `progress_seen_at` (when the bytes last advanced, server clock) is decided
before `bytes_transferred` changes."""
TOUCH_JOB = (
    "UPDATE backup_jobs SET status = %s, started_at = COALESCE(%s, started_at), "
    "last_snapshot_at = COALESCE(%s, last_snapshot_at), last_seen_at = UTC_TIMESTAMP(6), "
    "external_change_at = external_change_at WHERE id = %s"
)
"""A job whose changes were all older than its state (late updates) was still heard from: it may start,
take a snapshot, and its silence ends."""
LOCK_DISKS = (
    "SELECT job_id, disk_index, size_bytes, bytes_transferred, progress_percent, status, "
    f"{_US.format('last_telemetry_at')}, {_US.format('last_snapshot_at')} FROM backup_disks WHERE job_id IN ({{}})"
)
"""The disks of the commit's jobs (protected by their jobs' row locks: every writer of a disk locks its job)."""
WRITE_DISKS = (
    "INSERT INTO backup_disks (job_id, disk_index, size_bytes, bytes_transferred, progress_percent, status, "
    "last_telemetry_at, last_snapshot_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
    "size_bytes = VALUES(size_bytes), bytes_transferred = VALUES(bytes_transferred), "
    "progress_percent = VALUES(progress_percent), status = VALUES(status), "
    "last_telemetry_at = VALUES(last_telemetry_at), last_snapshot_at = VALUES(last_snapshot_at)"
)
END_DISKS = "UPDATE backup_disks SET status = %s WHERE job_id = %s AND status IN ({})".format(
    ", ".join(["%s"] * len(ACTIVE_STATUSES))
)
"""A job ended: its disks still active end with it (parameters: status, job id, *ACTIVE_STATUSES)."""
END_MACHINE = (
    "UPDATE machines SET successful = successful + %s, failed = failed + %s, cancelled = cancelled + %s, "
    "protected_bytes = protected_bytes + %s, last_success_at = CASE WHEN %s IS NULL THEN last_success_at "
    "WHEN last_success_at IS NULL OR last_success_at < %s THEN %s ELSE last_success_at END WHERE vm_name = %s"
)
"""A job of this machine ended: count it by outcome; a completed one is its newest success, maybe."""


def machine_end(vm_name: str, status: str, bytes_transferred: int, completed_at: str | None) -> tuple:
    """END_MACHINE's parameters for one ended job (`completed_at` as DATETIME text)."""
    success = completed_at if status == "completed" else None
    return (
        int(status == "completed"), int(status == "failed"), int(status == "cancelled"),
        bytes_transferred if status == "completed" else 0, success, success, success, vm_name,
    )  # fmt: skip


MIRROR = (
    "INSERT INTO job_telemetry_snapshots (job_id, job_type, timestamp, bytes_transferred, total_bytes, "
    "transfer_speed_bps, progress_percent, current_phase, disk_index, worker_count) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


def _moment(us: int | None) -> str | None:
    """Microseconds since the epoch as DATETIME(6) text (cheaper for a driver to send than a datetime)."""
    return None if us is None else str(_EPOCH + timedelta(microseconds=us))


def _mirror_row(c: StateChange, phase: str) -> tuple:
    return (
        c.job_id, c.job_type, _moment(c.at_us), c.bytes_transferred, c.total_bytes, c.transfer_speed_bps,
        round(c.progress_percent, 2), phase, c.disk_index, c.worker_count,
    )  # fmt: skip


def _due(last_us: int | None, at_us: int, interval_us: int) -> bool:
    return last_us is None or at_us - last_us >= interval_us


# --- planning ----------------------------------------------------------------------------------------


@dataclass
class CommitPlan:
    """Outcomes of a commit's changes and the rows to write (disk changes are planned in a second step)."""

    outcomes: list[Outcome]
    writes: list[tuple] = field(default_factory=list)
    touches: list[tuple] = field(default_factory=list)
    disk_changes: list[StateChange] = field(default_factory=list)
    mirror: list[tuple] = field(default_factory=list)
    ended: list[tuple[str, str]] = field(default_factory=list)
    """(status, job_id) of the jobs this commit ends: their active disks end with them."""
    machine_ends: list[tuple] = field(default_factory=list)
    """END_MACHINE parameters of the jobs this commit ends, in machine order (locks in one order)."""


class _JobPlan:
    """The new values of one locked job row, decided from the changes of one commit."""

    __slots__ = (
        "job_id", "vm_name", "status", "started_us", "state_us", "snapshot_us", "started", "state", "ended", "heard"
    )  # fmt: skip

    def __init__(self, row: Sequence) -> None:
        self.job_id, status, self.started_us, self.state_us, self.snapshot_us = row[:5]
        self.vm_name = row[5] if len(row) > 5 else None
        self.status = "running" if status == "pending" else status
        self.started = False
        self.state: StateChange | None = None
        self.ended: StateChange | None = None
        self.heard = False
        """An update of this job was accepted: the server heard from it (`last_seen_at`), however late it was."""

    def take(self, c: StateChange, interval_us: int, mirror: list[tuple]) -> None:
        self.heard = True
        # started_at is the job's earliest point, whenever it arrives: the rollup reads its points
        # between started_at and its end, which keeps a reader away from shards of other days.
        if self.started_us is None or c.at_us < self.started_us:
            self.started_us = c.at_us
            self.started = True
        if c.disk_index is not None or self.ended is not None:
            return
        if c.terminal:
            self.ended = self.state = c
            self.status = c.status
            mirror.append(_mirror_row(c, c.status))
            return
        if _due(self.snapshot_us, c.at_us, interval_us):
            self.snapshot_us = c.at_us
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


def _decide(changes: Sequence[StateChange], indexes: list[int], outcomes: list) -> list[StateChange]:
    """Outcomes of one running job's changes; returns the accepted ones.

    The first terminal change (in arrival order) ends the job. Another terminal change with the same
    status is the same end (200), with another status 409; a running change stamped after the end is
    409 too.
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


def plan_commit(changes: Sequence[StateChange], rows: dict[str, Sequence], interval_us: int) -> CommitPlan:
    """Decide one commit from its changes and its jobs' locked rows (`LOCK_JOBS`, keyed by id).

    A finished job answers 409, or 200 to a terminal update that ends it the same way (a retry); a
    missing job 404. For a running job the newest change by update time becomes its state (an older
    one is acknowledged, its point kept, but does not overwrite it), one change per snapshot interval
    is mirrored, and a terminal change ends it.
    """
    by_job: dict[str, list[int]] = {}
    for i, c in enumerate(changes):
        by_job.setdefault(c.job_id, []).append(i)
    plan = CommitPlan([None] * len(changes))  # type: ignore[list-item]
    for job_id, indexes in by_job.items():
        row = rows.get(job_id)
        if row is None:
            for i in indexes:
                plan.outcomes[i] = Outcome(404, "")
            continue
        if row[1] in TERMINAL_STATUSES:
            for i in indexes:
                c = changes[i]
                plan.outcomes[i] = Outcome(200 if c.terminal and c.status == row[1] else 409, row[1])
            continue
        job = _JobPlan(row)
        snapshot_before = job.snapshot_us
        for c in sorted(_decide(changes, indexes, plan.outcomes), key=lambda c: c.at_us):
            job.take(c, interval_us, plan.mirror)
            if c.disk_index is not None:
                plan.disk_changes.append(c)
        if job.ended is not None:
            plan.ended.append((job.status, job_id))
            if job.vm_name is not None:
                end = job.ended
                plan.machine_ends.append(
                    machine_end(job.vm_name, end.status, end.bytes_transferred, _moment(end.at_us))
                )
        if job.state is not None:
            plan.writes.append(job.row(job.snapshot_us != snapshot_before))
        elif job.heard:
            snapshot = _moment(job.snapshot_us) if job.snapshot_us != snapshot_before else None
            plan.touches.append((job.status, _moment(job.started_us) if job.started else None, snapshot, job_id))
    plan.machine_ends.sort(key=lambda end: end[-1])
    return plan


def plan_disks(changes: Sequence[StateChange], rows: Sequence[Sequence], interval_us: int) -> tuple[list, list]:
    """The disk rows to write and their mirror rows, from the disks' current rows (`LOCK_DISKS`)."""
    current = {(r[0], r[1]): list(r) for r in rows}
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
    return [(*r[:6], _moment(r[6]), _moment(r[7])) for r in touched.values()], mirror
