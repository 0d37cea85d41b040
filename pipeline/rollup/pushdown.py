"""The rollup's figures from InfluxDB's aggregates, not from every point: the pure half.

InfluxDB answers a finished job's count, peak, minimum non-zero, first and last point and the speed's
integral (the same trapezoids as `time_weighted_average`) in one request, and its curve in buckets
(mean speed, last progress and phase) in another, sent at the same time. What it cannot answer is
when the phase changed; buckets say where it may have (more than one phase in the bucket, or one
that is not the previous bucket's last), and only those buckets' points are read. `phase_runs` turns
the changes found into the same per-phase seconds `phase_durations` computes from every point.

Every function here is pure; `pipeline/rollup/reader.py` sends the queries and hands over the rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pipeline.rollup.metrics import MAX_PHASE_LENGTH, CurveFigures, JobTotals, SampleColumns

__all__ = [
    "Bucket",
    "JobAggregates",
    "Point",
    "bucket_width_ms",
    "changed_buckets",
    "phase_changes",
    "phase_runs",
]


@dataclass(frozen=True, slots=True)
class Point:
    """One job-level point as a selector returned it: time (epoch ms), speed, progress, phase."""

    t_ms: int
    speed: int
    progress: float
    phase: str


@dataclass(frozen=True, slots=True)
class Bucket:
    """One `GROUP BY time()` bucket of the job's curve (`start_ms` is the bucket's, not a point's)."""

    start_ms: int
    mean_speed: float
    last_progress: float
    last_phase: str
    phases: int
    """Distinct phases among the bucket's points (with one, it is `last_phase` throughout)."""


def _phase(name: str | None) -> str:
    """A phase as the rollup keys it: cut to the column's width (None, a foreign point's, is "")."""
    return (name or "")[:MAX_PHASE_LENGTH]


def bucket_width_ms(first_ms: int, last_ms: int, buckets: int) -> int:
    """Whole milliseconds per bucket so that about `buckets` of them span the job (at least 1 ms)."""
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, got {buckets}")
    return max(1, math.ceil((last_ms - first_ms + 1) / buckets))


def changed_buckets(buckets: Sequence[Bucket], first_phase: str) -> list[int]:
    """Indices of the buckets in which the phase may change: more than one phase among their points,
    or one phase other than the last one before them (the previous bucket's, or the job's first)."""
    previous = _phase(first_phase)
    found = []
    for i, bucket in enumerate(buckets):
        if bucket.phases > 1 or _phase(bucket.last_phase) != previous:
            found.append(i)
        previous = _phase(bucket.last_phase)
    return found


def phase_changes(
    rows_by_bucket: Iterable[tuple[str, Sequence[tuple[int, str | None]]]],
) -> list[tuple[int, str]]:
    """(time ms, new phase) of every change, from the points of the changed buckets, each given with
    the last phase before it: [(phase before, [(t_ms, phase), ...]), ...] in time order."""
    changes: list[tuple[int, str]] = []
    for before, rows in rows_by_bucket:
        previous = _phase(before)
        for t_ms, name in rows:
            phase = _phase(name)
            if phase != previous:
                changes.append((int(t_ms), phase))
                previous = phase
    return changes


def phase_runs(first: Point, last_ms: int, changes: Sequence[tuple[int, str]]) -> dict[str, float]:
    """Seconds per phase (0.1 s) in first-appearance order, as `phase_durations` gives them: each
    interval between two points belongs to the earlier point's phase, so a phase runs from its first
    point to the next phase's first point, and the last one to the job's last point."""
    starts = [(first.t_ms, _phase(first.phase)), *changes]
    seconds: dict[str, float] = {}
    for (start, phase), (end, _) in zip(starts, [*starts[1:], (last_ms, "")], strict=True):
        seconds[phase] = seconds.get(phase, 0.0) + (end - start) / 1000.0
    return {phase: round(value, 1) for phase, value in seconds.items()}


@dataclass(frozen=True, slots=True)
class JobAggregates:
    """What InfluxDB computed over a finished job's job-level points, and the phase seconds found."""

    count: int
    first: Point
    last: Point
    peak: Point
    min_nonzero: Point | None
    integral: float
    """The speed integrated over time in seconds (bytes): InfluxDB's trapezoids over every point."""
    buckets: tuple[Bucket, ...]
    phase_durations: dict[str, float]
    totals: JobTotals = JobTotals()
    """The last byte counts and the largest worker count (asked in the same request)."""
    stage_loads: dict[str, float | None] = field(default_factory=dict)
    """Each stage's mean load (asked in the same request)."""

    def figures(self, started_at: float | None, completed_at: float | None) -> CurveFigures:
        """The headline figures, as `rollup_metrics` would compute them from every point."""
        span = (self.last.t_ms - self.first.t_ms) / 1000.0
        if self.count >= 2:
            duration = round(span)
        elif started_at is not None and completed_at is not None:
            duration = max(0, round(completed_at - started_at))
        else:
            duration = 0
        avg = self.integral / span if span > 0 else float(self.first.speed)
        low = self.min_nonzero.speed if self.min_nonzero is not None else 0
        return CurveFigures(self.count, self.peak.speed, low, duration, avg, self.phase_durations)

    def curve(self) -> SampleColumns:
        """The chart's candidates: each bucket's mean at its middle (inside the job's span), and the
        first, last, peak and minimum non-zero points as they are, which no chart may lose."""
        columns = SampleColumns()
        first_ms, last_ms = self.first.t_ms, self.last.t_ms
        width = self.buckets[1].start_ms - self.buckets[0].start_ms if len(self.buckets) > 1 else 0
        points = [self.first, self.last, self.peak, *([self.min_nonzero] if self.min_nonzero else [])]
        exact = {p.t_ms for p in points}
        for b in self.buckets:
            middle = min(max(b.start_ms + width // 2, first_ms), last_ms)
            if middle not in exact:
                points.append(Point(middle, round(b.mean_speed), b.last_progress, _phase(b.last_phase)))
                exact.add(middle)
        points.sort(key=lambda p: p.t_ms)
        columns.extend(
            [p.t_ms / 1000.0 for p in points],
            [p.speed for p in points],
            [p.progress for p in points],
            [p.phase for p in points],
            [0] * len(points),
            [0] * len(points),
            [None] * len(points),
        )
        return columns
