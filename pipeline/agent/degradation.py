"""Simulated machine histories with a known future: healthy machines, and machines that degrade before they fail.

Pure: `plan_history(rng, runs, kind=…)` plans one machine's backup runs, one per schedule interval
(with retries after failures), each run's size, speed, duration and outcome, and for a degrading
machine the planted degradation that ends in a failure. `fails_or_overruns` is the ground truth a
failure-risk score is measured against (bench/risk.py).

A healthy machine's runs vary as real ones do: the changed data ±20 % (lognormal), the speed ±12 %,
now and then a run slowed by contention (a busy datastore) and, rarely, a failure out of the blue. A
degrading machine starts the same; from its onset its speed falls and/or its data grows and its
sporadic failures become more frequent, run after run, until the degradation ends in one or more
failures in a row; then it is fixed (its speed and failure rate are back to healthy) and goes on.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.agent.curves import ERROR_MESSAGES, MIB, plan_job

__all__ = [
    "KINDS",
    "OVERRUN_FACTOR",
    "OVERRUN_MIN_RUNS",
    "OVERRUN_RUNS",
    "Degradation",
    "MachineHistory",
    "SimulatedRun",
    "fails_or_overruns",
    "overran",
    "plan_history",
]

KINDS: dict[str, dict[str, tuple[float, float]]] = {
    # How each kind of degradation has gone by its end: the share of speed lost, of data gained, and
    # the chance of a failure just before the end (drawn uniformly in these ranges).
    "slowing_storage": {"speed_loss": (0.4, 0.7), "size_gain": (0.0, 0.0), "failure_peak": (0.1, 0.3)},
    "growing_data": {"speed_loss": (0.0, 0.0), "size_gain": (0.8, 2.0), "failure_peak": (0.05, 0.2)},
    "flaky_link": {"speed_loss": (0.0, 0.2), "size_gain": (0.0, 0.0), "failure_peak": (0.3, 0.6)},
    "filling_repository": {"speed_loss": (0.2, 0.4), "size_gain": (0.3, 0.8), "failure_peak": (0.15, 0.35)},
}
"""The kinds of planted degradation (bench/risk.py can hold one out of the seed the score is tuned on)."""
# The ground truth of "overran" is the job_overrunning alert rule's default: longer than 2× the median of
# the machine's last 10 completed runs of the same backup type, when there are at least 3 of them.
OVERRUN_FACTOR = 2.0
OVERRUN_RUNS = 10
OVERRUN_MIN_RUNS = 3
_CONTENTION = 0.03  # share of runs slowed by a busy datastore or a competing job, to 30-60 % of the speed
_RETRY_CHANCE = 0.5  # a failed run is retried 1-3 h later this often (else at the next scheduled time)


@dataclass(frozen=True, slots=True)
class Degradation:
    """A planted degradation: from run `onset`, for `length` runs, ending in `final_failures` failures."""

    kind: str
    onset: int
    length: int
    speed_loss: float
    size_gain: float
    failure_peak: float
    final_failures: int

    def progress(self, index: int) -> float | None:
        """How far the degradation has gone at run `index` (0 < p <= 1), None outside it."""
        if self.onset <= index < self.onset + self.length:
            return (index - self.onset + 1) / self.length
        return None

    def final(self, index: int) -> bool:
        """Run `index` is one of the failures the degradation ends in."""
        end = self.onset + self.length
        return end <= index < end + self.final_failures


@dataclass(frozen=True, slots=True)
class SimulatedRun:
    """One backup run as the job store would hold it, and what was planted in it."""

    index: int
    started_hours: float
    """Start, in hours after the history began."""
    backup_type: str
    status: str
    duration_seconds: float
    bytes_transferred: int
    error_message: str | None = None
    retry: bool = False
    degraded: bool = False
    """Part of a planted degradation: from its onset up to and including its final failures."""

    @property
    def ended_hours(self) -> float:
        return self.started_hours + self.duration_seconds / 3600.0


@dataclass(frozen=True, slots=True)
class MachineHistory:
    """A machine's runs, oldest first, its recovery-point objective and the degradation planted in it."""

    runs: tuple[SimulatedRun, ...]
    rpo_seconds: int
    interval_hours: float
    degradation: Degradation | None = None


def _degradation(rng: random.Random, kind: str, runs: int) -> Degradation:
    ranges = KINDS[kind]
    length = rng.randint(5, 14)
    final_failures = rng.randint(2, 3) if kind == "flaky_link" else rng.randint(1, 3)
    # Room before the onset for a healthy baseline, and after the end for the machine to recover.
    onset = rng.randint(min(12, runs // 3), max(min(12, runs // 3), runs - length - final_failures - 3))
    return Degradation(
        kind,
        onset,
        length,
        *(rng.uniform(*ranges[name]) for name in ("speed_loss", "size_gain", "failure_peak")),
        final_failures,
    )


def plan_history(rng: random.Random, runs: int = 60, kind: str | None = None) -> MachineHistory:
    """`runs` scheduled runs of one machine (a failed one may be followed by a retry), with a degradation
    of `kind` (one of KINDS) planted, or none for a healthy machine."""
    interval = rng.choice((24.0, 24.0, 24.0, 12.0, 8.0))
    rpo = int(interval * 3600 * rng.choice((1.0, 1.5, 2.0, 3.0)))
    full_every = rng.choice((None, None, 7))  # some machines take a weekly full, the others incrementals only
    usual_size = rng.uniform(5, 200) * 1024 * MIB
    usual_speed = rng.uniform(40, 400) * MIB
    overhead = rng.uniform(60, 300)  # snapshot and catalogue, whatever the size
    base_failure = rng.uniform(0.005, 0.04)
    degradation = _degradation(rng, kind, runs) if kind is not None else None
    planned: list[SimulatedRun] = []
    clock = 0.0
    index = 0
    for slot in range(runs):
        start = slot * interval + rng.uniform(-0.25, 0.25)
        clock = max(clock, start)
        full = full_every is not None and slot % full_every == 0
        retry = False
        while True:
            run = _run(rng, index, clock, full, retry, degradation, usual_size, usual_speed, overhead, base_failure)
            planned.append(run)
            index += 1
            clock = run.ended_hours
            if run.status == "completed" or retry or rng.random() >= _RETRY_CHANCE:
                break
            retry = True  # one retry of a failed run, 1-3 h after it ended, before the next scheduled run
            clock += rng.uniform(1.0, 3.0)
            if clock >= (slot + 1) * interval - 0.5:
                break
    return MachineHistory(tuple(planned), rpo, interval, degradation)


def _run(
    rng: random.Random,
    index: int,
    start: float,
    full: bool,
    retry: bool,
    degradation: Degradation | None,
    usual_size: float,
    usual_speed: float,
    overhead: float,
    base_failure: float,
) -> SimulatedRun:
    size = usual_size * math.exp(rng.gauss(0.0, 0.2)) * (rng.uniform(4, 10) if full else 1.0)
    speed = usual_speed * math.exp(rng.gauss(0.0, 0.12))
    if rng.random() < _CONTENTION:
        speed *= rng.uniform(0.3, 0.6)
    failure = base_failure
    progress = degradation.progress(index) if degradation else None
    final = degradation.final(index) if degradation else False
    if degradation is not None and progress is not None:
        speed *= 1.0 - degradation.speed_loss * progress
        size *= 1.0 + degradation.size_gain * progress
        failure += (degradation.failure_peak - base_failure) * progress**2
    if degradation is not None and final:
        speed *= 1.0 - degradation.speed_loss
        size *= 1.0 + degradation.size_gain
    fail = final or rng.random() < failure
    duration = overhead + size / speed / 0.9  # the transfer is ~90 % of a run (curves.plan_job's phases)
    total = int(size)
    error = None
    if fail:
        # A failed run stops where the simulator's curve model stops it: partway through the transfer.
        ticks = plan_job(rng, duration, total, True, interval=duration / 40)
        duration, total = ticks[-1].offset, ticks[-1].bytes_transferred
        error = ticks[-1].error_message or rng.choice(ERROR_MESSAGES)
    return SimulatedRun(
        index=index,
        started_hours=start,
        backup_type="full" if full else "incremental",
        status="failed" if fail else "completed",
        duration_seconds=round(duration, 1),
        bytes_transferred=total,
        error_message=error,
        retry=retry,
        degraded=progress is not None or final,
    )


def overran(run: SimulatedRun, before: Sequence[SimulatedRun]) -> bool:
    """A completed run longer than OVERRUN_FACTOR × the median of the last OVERRUN_RUNS completed runs of
    its backup type before it (`before`: oldest first), as the job_overrunning alert rule sees it."""
    if run.status != "completed":
        return False
    usual = [
        r.duration_seconds for r in reversed(before) if r.status == "completed" and r.backup_type == run.backup_type
    ]
    usual = usual[:OVERRUN_RUNS]
    if len(usual) < OVERRUN_MIN_RUNS:
        return False
    return run.duration_seconds > OVERRUN_FACTOR * statistics.median(usual)


def fails_or_overruns(history: MachineHistory, index: int) -> bool:
    """The ground truth: run `index` of `history` failed or overran."""
    run = history.runs[index]
    return run.status == "failed" or overran(run, history.runs[:index])
