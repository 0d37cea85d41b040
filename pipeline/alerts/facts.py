"""What the rules need, read from MySQL with bounded work: no scan of `backup_jobs` per evaluation.

Indexes used: machines (every row, one per machine: 10,000 rows read for 10,000 machines);
`backup_jobs (status, last_seen_at)` for pending and running jobs; `(ended_seen_at)`,
`(status, rolled_up_at)` and `(external_change_at, vm_name)` for the machines and job types whose jobs
ended, were rolled up or were changed outside the pipeline since the last evaluation; `(vm_name,
created_at)` for the newest finished jobs of one machine; `(rollup_failed_at)` for set-aside rollups.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from pipeline.alerts.rules import FinishedPair, MachineFacts, RunningJob, SetAsideJob
from pipeline.read.jobs import duration_seconds

__all__ = ["UsualDurations", "finished_pairs", "machines", "running_jobs", "set_aside", "touched_pairs"]

_MACHINES = text("SELECT vm_name, rpo_seconds, last_success_at, created_at FROM machines")
_RUNNING = text(
    "SELECT id, vm_name, job_type, backup_type, status, created_at, started_at, completed_at, last_telemetry_at, "
    "last_seen_at, progress_seen_at, progress_percent FROM backup_jobs WHERE status IN ('pending', 'running')"
)
_USUAL = text(
    "SELECT TIMESTAMPDIFF(MICROSECOND, started_at, completed_at) / 1000000 AS seconds FROM backup_jobs "
    "WHERE vm_name = :vm AND backup_type = :type AND status = 'completed' AND started_at IS NOT NULL "
    "ORDER BY created_at DESC LIMIT :runs"
)
_TOUCHED = text(
    "SELECT DISTINCT vm_name, job_type FROM backup_jobs WHERE ended_seen_at > :since "
    "UNION SELECT DISTINCT vm_name, job_type FROM backup_jobs WHERE status = 'completed' AND rolled_up_at > :since "
    "UNION SELECT DISTINCT vm_name, job_type FROM backup_jobs WHERE external_change_at > :since"
)
_NEWEST = text(
    "SELECT id, status, error_message, rolled_up_at, JSON_EXTRACT(performance_metrics, '$.anomalies') AS anomalies "
    "FROM backup_jobs WHERE vm_name = :vm AND job_type = :type AND status IN ('completed', 'failed') "
    "ORDER BY created_at DESC, id DESC LIMIT :depth"
)
_SET_ASIDE = text(
    "SELECT id, vm_name, rollup_attempts, rollup_last_error FROM backup_jobs "
    "WHERE rollup_failed_at IS NOT NULL AND rolled_up_at IS NULL"
)
_DEPTH = 50
"""Finished jobs looked at per machine and job type: counts failures in a row up to this."""


def machines(conn: Connection, rpo_default: int) -> list[MachineFacts]:
    return [
        MachineFacts(
            r.vm_name, r.rpo_seconds if r.rpo_seconds is not None else rpo_default, r.last_success_at, r.created_at
        )  # fmt: skip
        for r in conn.execute(_MACHINES)
    ]


def _linear_eta(row, elapsed: float | None, now: datetime) -> datetime | None:
    """When the job ends if it keeps its average pace so far (the window-end check's estimate)."""
    progress = float(row.progress_percent or 0)
    if elapsed is None or progress < 5.0 or progress >= 100.0:
        return None
    return now + timedelta(seconds=elapsed * (100.0 - progress) / progress)


class UsualDurations:
    """The last completed durations of a machine's backup type, kept a few minutes between evaluations (they
    change only when one of its jobs completes; a running job needs them at every evaluation)."""

    def __init__(self, ttl: float = 300.0) -> None:
        self.ttl = timedelta(seconds=ttl)
        self._kept: dict[tuple[str, str, int], tuple[datetime, list[float]]] = {}

    def get(self, conn: Connection, vm_name: str, backup_type: str, runs: int, now: datetime) -> list[float]:
        key = (vm_name, backup_type, runs)
        hit = self._kept.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        if len(self._kept) > 100_000:
            self._kept.clear()
        rows = conn.execute(_USUAL, {"vm": vm_name, "type": backup_type, "runs": runs})
        durations = [float(u.seconds) for u in rows if u.seconds is not None]
        self._kept[key] = (now, durations)
        return durations


def running_jobs(conn: Connection, now: datetime, runs: int, usual: UsualDurations | None = None) -> list[RunningJob]:
    """Pending and running jobs, each with its machine's last completed durations of its backup type."""
    rows = conn.execute(_RUNNING).all()
    durations = usual or UsualDurations(ttl=0)
    jobs = []
    for r in rows:
        elapsed = duration_seconds(r, now) if r.status == "running" else None
        jobs.append(
            RunningJob(
                job_id=r.id,
                vm_name=r.vm_name,
                job_type=r.job_type,
                backup_type=r.backup_type,
                status=r.status,
                created_at=r.created_at,
                elapsed_seconds=elapsed,
                last_seen_at=r.last_seen_at,
                progress_seen_at=r.progress_seen_at,
                usual_durations=durations.get(conn, r.vm_name, r.backup_type, runs, now)
                if r.status == "running"
                else (),
                eta_at=_linear_eta(r, elapsed, now),
            )
        )
    return jobs


def touched_pairs(conn: Connection, since: datetime) -> set[tuple[str, str]]:
    """(machine, job type) pairs with a job that ended, was rolled up or was changed outside since `since`."""
    return {(r.vm_name, r.job_type) for r in conn.execute(_TOUCHED, {"since": since})}


def _anomalies(raw) -> list[dict]:
    if raw is None:
        return []
    value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    return list(value) if isinstance(value, list) else []


def finished_pairs(conn: Connection, pairs: Iterable[tuple[str, str]]) -> list[FinishedPair]:
    """For each pair, its newest completed-or-failed job, the failures in a row, and the anomaly flags of
    its newest rolled-up completed run."""
    found = []
    for vm_name, job_type in sorted(pairs):
        rows = conn.execute(_NEWEST, {"vm": vm_name, "type": job_type, "depth": _DEPTH}).all()
        if not rows:
            found.append(FinishedPair(vm_name, job_type, "", "none", None, 0))
            continue
        failures = next((i for i, r in enumerate(rows) if r.status != "failed"), len(rows))
        newest_completed = next((r for r in rows if r.status == "completed"), None)
        anomalous = newest_completed if newest_completed is not None and newest_completed.rolled_up_at else None
        found.append(
            FinishedPair(
                vm_name,
                job_type,
                rows[0].id,
                rows[0].status,
                rows[0].error_message,
                failures,
                anomalies=_anomalies(anomalous.anomalies) if anomalous is not None else (),
                anomalous_job_id=anomalous.id if anomalous is not None else None,
            )
        )
    return found


def set_aside(conn: Connection) -> list[SetAsideJob]:
    return [
        SetAsideJob(r.id, r.vm_name, int(r.rollup_attempts or 0), r.rollup_last_error) for r in conn.execute(_SET_ASIDE)
    ]
