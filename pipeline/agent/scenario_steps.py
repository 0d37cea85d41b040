"""The steps a demo scenario is made of (create a job, send an update, set an RPO, wait for a rollup) and the
two shapes of run it sends: a past run backfilled at once, and a live run sent as it happens. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

__all__ = [
    "REPOSITORY",
    "Action",
    "AwaitRollup",
    "CreateJob",
    "Scenario",
    "SendBatch",
    "SendUpdate",
    "SetRpo",
    "Step",
    "backfilled_run",
    "live_run",
]

REPOSITORY = "repo-primary"


@dataclass(frozen=True, slots=True)
class CreateJob:
    """POST /backups with a client-chosen id (a resend cannot create a second job)."""

    job_id: str
    vm_name: str
    backup_type: str = "incremental"
    machine: Mapping[str, object] | None = None

    def body(self) -> dict:
        body: dict = {"vm_name": self.vm_name, "backup_type": self.backup_type, "repository_id": REPOSITORY}
        body |= {"job_type": "backup", "backup_id": self.job_id}
        if self.machine is not None:
            body["machine"] = dict(self.machine)
        return body


@dataclass(frozen=True, slots=True)
class SendUpdate:
    """One job-level update, stamped `age` seconds before it is sent (0: live)."""

    job_id: str
    body: Mapping[str, object]
    age: float = 0.0

    @property
    def terminal(self) -> bool:
        return self.body.get("status", "running") != "running"


@dataclass(frozen=True, slots=True)
class SendBatch:
    """Updates of one job in one request (POST /telemetry/batch: one group commit), so that the job goes from
    pending to its end at once. A backfilled run must never be seen running: the evaluator keeps a machine's
    usual durations for minutes once it has seen one of its jobs run, and would keep them without this run."""

    updates: tuple[SendUpdate, ...]

    @property
    def job_id(self) -> str:
        return self.updates[0].job_id


@dataclass(frozen=True, slots=True)
class SetRpo:
    """PUT /machines/{vm}/rpo (None: back to the default); an operator's write."""

    vm_name: str
    rpo_seconds: int | None


@dataclass(frozen=True, slots=True)
class AwaitRollup:
    """Wait until the scheduler has rolled these jobs up (a run's anomalies are judged against rolled-up runs)."""

    job_ids: tuple[str, ...]


Action = CreateJob | SendUpdate | SendBatch | SetRpo | AwaitRollup


@dataclass(frozen=True, slots=True)
class Step:
    """An action, `delay` seconds after the scenario's previous step was done."""

    delay: float
    action: Action
    note: str = ""
    """Said in the log once done (what the user should see next)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """The steps that stage one rule on one machine, and when it should fire and resolve (seconds after the
    start, rollups estimated at two rollup intervals each; None: it stays firing)."""

    rule: str
    vm_name: str
    story: str
    steps: tuple[Step, ...]
    fires_after: float
    resolves_after: float | None = None

    @property
    def job_ids(self) -> list[str]:
        return [s.action.job_id for s in self.steps if isinstance(s.action, CreateJob)]


def _body(done: int, total: int, speed: int, phase: str, status: str, error: str | None) -> dict:
    body: dict = {"bytes_transferred": done, "total_bytes": total, "transfer_speed_bps": speed}
    body |= {"progress_percent": round(100.0 * done / total, 2), "current_phase": phase, "status": status}
    if error:
        body["error_message"] = error
    return body


def backfilled_run(job_id: str, ended_ago: float, duration: float, total: int, note: str = "") -> list[Step]:
    """A completed run that ended `ended_ago` seconds ago after `duration` seconds: six updates in one batch,
    stamped as they were measured (an agent sending its kept outbox)."""
    points, speed = 6, round(total / duration)
    updates = []
    for i in range(points):
        fraction, last = i / (points - 1), i == points - 1
        phase = "snapshot" if i == 0 else "finalizing" if last else "transferring"
        status = "completed" if last else "running"
        body = _body(round(total * fraction), total, 0 if last else speed, phase, status, None)
        updates.append(SendUpdate(job_id, body, ended_ago + duration * (1 - fraction)))
    return [Step(0.0, SendBatch(tuple(updates)), note)]


def live_run(
    job_id: str,
    interval: float,
    marks: list[tuple[float, float]],
    total: int,
    *,
    status: str = "completed",
    error: str | None = None,
    note: str = "",
) -> list[Step]:
    """A run sent as it happens, an update every `interval` s. `marks` are the (seconds, fraction done)
    corners of its progress, linear in between; the last one is its end, the update with `status`."""
    end = marks[-1][0]
    times = [k * interval for k in range(int(end / interval) + 1) if k * interval < end] + [end]

    def done(t: float) -> float:
        for (t0, f0), (t1, f1) in pairwise(marks):
            if t <= t1:
                return f1 if t1 == t0 else f0 + (f1 - f0) * (t - t0) / (t1 - t0)
        return marks[-1][1]

    steps = []
    for k, t in enumerate(times):
        last = k == len(times) - 1
        before = times[k - 1] if k else t
        speed = round((done(t) - done(before)) * total / (t - before)) if k else 0
        body = _body(round(total * done(t)), total, speed, "transferring" if k else "snapshot",
                     status if last else "running", error if last else None)  # fmt: skip
        steps.append(Step(t - before, SendUpdate(job_id, body), note if last else ""))
    return steps
