"""Failure risk of a machine: how likely its next backup fails or overruns, from its recent runs, with reasons.

Pure, in two steps, because one part changes only when a run ends and the other with the clock:
  * `assess_history(runs)` reads the machine's last RUNS finished backup runs (newest first) and
    returns a `HistoryRisk`: the factors it found, each worth some points, and their sum with the
    intercept (a logit). The job store keeps it in `machines.risk_logit` / `risk_factors` as runs end.
  * `failure_risk(history, age_seconds=…, rpo_seconds=…)` adds the RPO margin (the age of the last
    successful backup against the objective) and turns the logit into a score in [0, 1]:
    score = 1 / (1 + exp(-(INTERCEPT + Σ weight × factor))), with a level and the reasons in words.

The factors (x), each worth weight × x points of the logit (WEIGHTS):
  failures   Σ 0.7^i over the last RUNS runs that failed (i = 0 the newest): recent failures count more
  streak     failures in a row up to the newest run, at most 3 (retries of a failed run included)
  duration   growth of the duration over the last TREND_RUNS completed runs of the machine's usual
             backup type: the least-squares slope of log(duration) × (runs − 1), when it grew (> 0)
  size       the same for the bytes transferred
  speed      the same for the speed (bytes ÷ duration), when it fell
  last_run   log(the newest completed run's duration ÷ the median of the ones before it), when longer:
             how close it came to the overrun line (2× usual, the job_overrunning rule)
  rpo        age of the last success ÷ the objective, at most 2 (never backed up: 2)
INTERCEPT and the weights but the RPO's are a logistic regression on simulated histories of seed 1
(`bench/risk.py --fit`, rounded: the simulator's planted degradations), checked on seed 3; HIGH is the
threshold with the best F1 on seed 1. The RPO weight is set by hand: in the simulation the objective says
nothing about the next run (the fit gives it 0), but a machine near or past its objective can least
afford a failure, so of two equal histories it ranks the one closer to its RPO first (it changes the
ROC AUC by 0.003: down on seed 1, up on seed 2). What the score is worth against "failed last time"
on seed 2: bench/risk.py and the README.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "HIGH",
    "INTERCEPT",
    "MEDIUM",
    "RPO_CAP",
    "RUNS",
    "TREND_RUNS",
    "WEIGHTS",
    "Factor",
    "HistoryRisk",
    "PastRun",
    "Risk",
    "assess_history",
    "factor_values",
    "failure_risk",
    "level_of",
    "rpo_points",
]

RUNS = 10
"""Finished backup runs looked at (completed or failed; cancelled ones say nothing about the machine)."""
TREND_RUNS = 8
"""Completed runs a trend is fitted over (at least MIN_TREND_RUNS)."""
MIN_TREND_RUNS = 4
DECAY = 0.7
"""Weight of a failure one run older than another."""
RPO_CAP = 2.0
"""The RPO factor stops growing at twice the objective (and a machine never backed up counts as that)."""
INTERCEPT = -3.62
WEIGHTS: Mapping[str, float] = {
    "failures": 0.95,
    "streak": 0.14,
    "duration": 1.18,
    "size": 0.65,
    "speed": 0.70,
    "last_run": 0.37,
    "rpo": 0.30,
}
HIGH = 0.115
"""Score from which the risk is "high": the best F1 against the planted truth of seed 1 (about twice the
average run's chance to fail or overrun there)."""
MEDIUM = 0.05
"""Score from which it is "medium": seed 1's average chance (5.2 %), i.e. more likely than the average run."""
_REASON_POINTS = 0.25
"""A factor is named among the reasons when it adds at least this many points."""


@dataclass(frozen=True, slots=True)
class PastRun:
    """One finished backup run as the risk reads it."""

    status: str
    """completed or failed (others are left out by the caller)."""
    backup_type: str
    duration_seconds: float | None
    bytes_transferred: int


@dataclass(frozen=True, slots=True)
class Factor:
    """One thing the history says: its value (x), the points it adds (weight × x), and why in words."""

    name: str
    value: float
    points: float
    reason: str

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "value": round(self.value, 4),
            "points": round(self.points, 4),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class HistoryRisk:
    """What the finished runs say: the logit without the RPO part, how many runs, and the factors."""

    logit: float
    runs: int
    factors: tuple[Factor, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        """The `machines.risk_factors` JSON."""
        return {"runs": self.runs, "factors": [f.as_dict() for f in self.factors]}

    @classmethod
    def stored(cls, logit: float | None, factors: Mapping | str | None) -> HistoryRisk | None:
        """From the two columns (None: not assessed yet); `factors` as JSON text or decoded."""
        if logit is None:
            return None
        body = json.loads(factors) if isinstance(factors, str | bytes) else factors or {}
        return cls(
            float(logit),
            int(body.get("runs", 0)),
            tuple(
                Factor(f["name"], float(f["value"]), float(f["points"]), f["reason"]) for f in body.get("factors", [])
            ),
        )


@dataclass(frozen=True, slots=True)
class Risk:
    """The score in [0, 1], its level, and the reasons, the weightiest first."""

    score: float
    level: str
    reasons: list[str]

    def as_dict(self) -> dict:
        return {"score": round(self.score, 3), "level": self.level, "reasons": self.reasons}


def _trend(values: Sequence[float]) -> float | None:
    """Least-squares slope of log(value) over the runs (oldest first) × (runs − 1): the log growth end to end."""
    if len(values) < MIN_TREND_RUNS or any(v <= 0 for v in values):
        return None
    logs = [math.log(v) for v in values]
    n = len(logs)
    mean_x, mean_y = (n - 1) / 2, statistics.fmean(logs)
    slope = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(logs)) / sum((i - mean_x) ** 2 for i in range(n))
    return slope * (n - 1)


def _usual_type(runs: Sequence[PastRun]) -> str | None:
    """The backup type most of the completed runs have (the newest's on a tie): the machine's routine runs."""
    counts = Counter(r.backup_type for r in runs if r.status == "completed")
    if not counts:
        return None
    best = max(counts.values())
    return next(r.backup_type for r in runs if r.status == "completed" and counts[r.backup_type] == best)


def _percent(log_growth: float) -> int:
    return round(100 * (math.exp(log_growth) - 1))


def factor_values(runs: Sequence[PastRun]) -> dict[str, tuple[float, str]]:
    """Each history factor's value and its reason, from the last RUNS finished runs (newest first)."""
    recent = list(runs[:RUNS])
    found: dict[str, tuple[float, str]] = {}
    failed = [r.status == "failed" for r in recent]
    if any(failed):
        weighted = sum(DECAY**i for i, f in enumerate(failed) if f)
        count = f"{sum(failed)} of the last {len(recent)} runs" if len(recent) > 1 else "its only finished run"
        found["failures"] = (weighted, f"{count} failed")
    streak = next((i for i, f in enumerate(failed) if not f), len(failed))
    if streak:
        found["streak"] = (
            float(min(streak, 3)),
            "the last run failed" if streak == 1 else f"the last {streak} runs failed in a row",
        )
    kind = _usual_type(recent)
    usual = [r for r in recent if r.status == "completed" and r.backup_type == kind and r.duration_seconds]
    window = list(reversed(usual[:TREND_RUNS]))  # oldest first
    n = len(window)
    durations = [float(r.duration_seconds or 0) for r in window]
    sizes = [float(r.bytes_transferred) for r in window]
    speeds = [s / d for s, d in zip(sizes, durations, strict=True)]
    grew = _trend(durations)
    if grew is not None and grew > 0:
        found["duration"] = (grew, f"duration grew {_percent(grew)} % over {n} runs")
    grew = _trend(sizes)
    if grew is not None and grew > 0:
        found["size"] = (grew, f"data grew {_percent(grew)} % over {n} runs")
    grew = _trend(speeds)
    if grew is not None and grew < 0:
        found["speed"] = (-grew, f"speed fell {-_percent(grew)} % over {n} runs")
    if len(usual) >= 4:
        newest, before = (
            float(usual[0].duration_seconds or 0),
            statistics.median(float(r.duration_seconds or 0) for r in usual[1:]),
        )
        if before > 0 and newest > before:
            ratio = newest / before
            found["last_run"] = (math.log(ratio), f"the last run took {ratio:.1f}× its usual time")
    return found


def assess_history(runs: Sequence[PastRun], weights: Mapping[str, float] = WEIGHTS) -> HistoryRisk:
    """The history part of the risk from the machine's finished backup runs, newest first."""
    recent = runs[:RUNS]
    if not recent:
        return HistoryRisk(INTERCEPT, 0, ())
    factors = tuple(
        Factor(name, value, weights[name] * value, reason) for name, (value, reason) in factor_values(recent).items()
    )
    return HistoryRisk(INTERCEPT + sum(f.points for f in factors), len(recent), factors)


def rpo_points(age_seconds: float | None, rpo_seconds: int, weight: float | None = None) -> tuple[float, float]:
    """(value, points) of the RPO factor: age ÷ objective, at most RPO_CAP; never backed up is RPO_CAP."""
    value = RPO_CAP if age_seconds is None or rpo_seconds <= 0 else min(max(age_seconds, 0.0) / rpo_seconds, RPO_CAP)
    return value, (WEIGHTS["rpo"] if weight is None else weight) * value


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.0f} h" if hours >= 1.5 else f"{round(seconds / 60)} min"


def _rpo_reason(age_seconds: float | None, rpo_seconds: int) -> str:
    if age_seconds is None:
        return "never backed up successfully"
    left = rpo_seconds - age_seconds
    if left >= 0:
        return f"{_hours(left)} left of its {_hours(rpo_seconds)} RPO"
    return f"{_hours(-left)} past its {_hours(rpo_seconds)} RPO"


def level_of(score: float) -> str:
    """low, medium or high."""
    return "high" if score >= HIGH else "medium" if score >= MEDIUM else "low"


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def failure_risk(history: HistoryRisk | None, *, age_seconds: float | None, rpo_seconds: int) -> Risk:
    """The risk now: the history's logit (None, not assessed yet: the intercept alone) plus the RPO margin's
    points (`age_seconds` of the last success, None if never), as a score with its level and reasons."""
    known = history if history is not None else HistoryRisk(INTERCEPT, 0, ())
    value, points = rpo_points(age_seconds, rpo_seconds)
    factors = [*known.factors, Factor("rpo", value, points, _rpo_reason(age_seconds, rpo_seconds))]
    score = _sigmoid(known.logit + points)
    reasons = [f.reason for f in sorted(factors, key=lambda f: -f.points) if f.points >= _REASON_POINTS]
    if history is None:
        reasons.insert(0, "not assessed yet (after the next rollup or reconcile of its jobs)")
    elif known.runs == 0:
        reasons.insert(0, "no finished backup yet to judge by")
    elif not reasons:
        reasons = [f"nothing unusual in the last {known.runs} runs"]
    return Risk(score, level_of(score), reasons)
