"""Pure rollup maths: a finished job's telemetry samples -> the bounded `performance_metrics` JSON."""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from pipeline.rollup.downsample import Series, chart_indices

__all__ = [
    "MAX_DISKS",
    "MAX_PHASE_LENGTH",
    "CurveFigures",
    "DiskSummary",
    "JobTotals",
    "SampleColumns",
    "headline",
    "phase_durations",
    "rollup_metrics",
    "time_weighted_average",
]

MAX_PHASE_LENGTH = 100
"""Phase names are cut to this many characters, the width of `backup_jobs.current_phase`."""
MAX_DISKS = 64
"""Most per-disk entries kept in `performance_metrics.disks`."""
_MIB = 1_048_576
_MAX_STATUS_LENGTH = 32
# A chart keeps at least this many points before phases or disks are dropped to meet the size bound.
_CHART_FLOOR = 16
_NO_WORKERS = -1


@dataclass(frozen=True, slots=True)
class JobTotals:
    """A job's last byte counts and its largest worker count."""

    bytes_transferred: int = 0
    total_bytes: int = 0
    max_worker_count: int | None = None

    @classmethod
    def last_of(cls, samples: SampleColumns) -> JobTotals:
        """The last sample's byte counts and the largest worker count reported, for callers without
        the store's own aggregates (those count every disk's points, and win when they exist)."""
        done, total, workers = samples.arrays()[4:]
        if not len(done):
            return cls()
        most = int(workers.max())
        return cls(int(done[-1]), int(total[-1]), most if most >= 0 else None)


@dataclass(frozen=True, slots=True)
class CurveFigures:
    """A run's figures over all its job-level points, when something other than the samples handed to
    `rollup_metrics` computed them (InfluxDB's aggregates: pipeline/rollup/pushdown.py); the samples
    then only give the chart."""

    snapshots: int
    peak_speed: int
    min_nonzero_speed: int
    duration: int
    avg_speed: float
    phase_durations: dict[str, float]


class DiskSummary(msgspec.Struct, frozen=True):
    """One disk's rolled-up transfer figures (also the API contract's shape of `performance_metrics.disks`)."""

    disk_index: int
    snapshots_recorded: int
    bytes_transferred: int
    total_bytes: int
    peak_speed_bps: int
    avg_speed_bps: int


class SampleColumns:
    """Columnar, append-only store of a job's job-level samples in time order (memory-light: array module)."""

    __slots__ = ("_t", "_speed", "_progress", "_phase", "_bytes", "_total", "_workers", "_codes")

    def __init__(self) -> None:
        self._t = array("d")
        self._speed = array("q")
        self._progress = array("d")
        # Phases repeat for thousands of samples, so each is stored once and referenced by code.
        self._phase = array("I")
        self._bytes = array("q")
        self._total = array("q")
        self._workers = array("i")
        self._codes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._t)

    def _code(self, phase: str) -> int:
        return self._codes.setdefault(phase[:MAX_PHASE_LENGTH], len(self._codes))

    def append(
        self,
        t: float,
        speed: int,
        progress: float,
        phase: str,
        bytes_transferred: int,
        total_bytes: int,
        worker_count: int | None,
    ) -> None:
        """Add one sample (t in epoch seconds; samples arriving out of order are sorted at rollup)."""
        if not (math.isfinite(t) and math.isfinite(progress)):
            raise ValueError(f"time and progress must be finite, got t={t!r} progress={progress!r}")
        if worker_count is not None and worker_count < 0:
            raise ValueError(f"worker_count must be None or >= 0, got {worker_count}")
        # Convert the ints together first so that a rejected value leaves no column one item longer.
        ints = array("q", (speed, bytes_transferred, total_bytes))
        self._speed.append(ints[0])
        self._bytes.append(ints[1])
        self._total.append(ints[2])
        self._t.append(t)
        self._progress.append(progress)
        self._phase.append(self._code(phase))
        self._workers.append(_NO_WORKERS if worker_count is None else worker_count)

    def extend(
        self,
        times: Iterable[float],
        speeds: Iterable[int],
        progresses: Iterable[float],
        phases: Iterable[str],
        bytes_transferred: Iterable[int],
        total_bytes: Iterable[int],
        worker_counts: Iterable[int | None],
    ) -> None:
        """Add many samples given as parallel sequences; all or nothing."""
        t, progress = array("d", times), array("d", progresses)
        ints = [array("q", column) for column in (speeds, bytes_transferred, total_bytes)]
        workers, names = list(worker_counts), list(phases)
        lengths = [len(t), len(progress), len(names), len(workers), *map(len, ints)]
        if len(set(lengths)) != 1:
            raise ValueError(f"parallel sequences differ in length: {lengths}")
        if not (np.isfinite(t).all() and np.isfinite(progress).all()):
            raise ValueError("times and progresses must be finite")
        if any(w is not None and w < 0 for w in workers):
            raise ValueError("worker counts must be None or >= 0")
        new = (
            t,
            ints[0],
            progress,
            array("I", [self._code(p) for p in names]),
            ints[1],
            ints[2],
            array("i", [_NO_WORKERS if w is None else w for w in workers]),
        )
        for own, more in zip(self._columns(), new, strict=True):
            own.extend(more)

    def _columns(self) -> tuple[array[Any], ...]:
        return (self._t, self._speed, self._progress, self._phase, self._bytes, self._total, self._workers)

    def arrays(self) -> tuple[npt.NDArray[Any], ...]:
        """Copies of (times, speeds, progresses, phase codes, bytes, totals, workers) sorted by time."""
        # Copies, not views: an array exporting its buffer refuses to grow, which would break append().
        cols = [np.frombuffer(c, dtype=c.typecode) for c in self._columns()]
        t = cols[0]
        if len(t) > 1 and (np.diff(t) < 0).any():
            order = np.argsort(t, kind="stable")  # stable: equal times keep their arrival order
            return tuple(c[order] for c in cols)
        return tuple(c.copy() for c in cols)

    def phase_names(self) -> list[str]:
        """Phase names indexed by the codes that `arrays()` returns."""
        return list(self._codes)


def time_weighted_average(times: Series, speeds: Series) -> float:
    """Trapezoid integral of speed over time divided by the time span.

    One sample gives its speed, a zero span the arithmetic mean, no samples 0.0.
    """
    t = np.asarray(times, dtype=np.float64)
    s = np.asarray(speeds, dtype=np.float64)
    if t.shape != s.shape:
        raise ValueError(f"times and speeds differ in length: {t.shape} vs {s.shape}")
    if len(t) == 0:
        return 0.0
    span = float(t[-1] - t[0])
    if span <= 0:
        return float(s.mean())
    return float(np.dot(np.diff(t), s[1:] + s[:-1]) / 2 / span)


def phase_durations(times: Series, phases: Sequence[str]) -> dict[str, float]:
    """Seconds per phase (0.1 s), attributing each interval [t_i, t_i+1) to phases[i]; first-appearance order."""
    if len(times) != len(phases):
        raise ValueError(f"times and phases differ in length: {len(times)} vs {len(phases)}")
    codes: dict[str, int] = {}
    idx = np.fromiter((codes.setdefault(p, len(codes)) for p in phases), dtype=np.int64, count=len(phases))
    return _durations(np.asarray(times, dtype=np.float64), idx, list(codes))


def _durations(t: npt.NDArray[np.float64], codes: npt.NDArray[Any], names: list[str]) -> dict[str, float]:
    if len(t) == 0:
        return {}
    # The last sample opens no interval, but its phase was still seen and is listed (with 0.0 if new).
    sums = np.bincount(codes[:-1], weights=np.diff(t), minlength=len(names))
    _, first = np.unique(codes, return_index=True)
    order = codes[np.sort(first)]
    # Vectorised rounding: a job may (pathologically) report a new phase name in every sample.
    return dict(zip([names[c] for c in order.tolist()], np.round(sums[order], 1).tolist(), strict=True))


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _take(items: Iterable[str], room: int) -> tuple[int, int]:
    """How many leading encoded items fit in `room` bytes of a JSON list/object body, and their size."""
    count = size = 0
    for item in items:
        extra = len(item) + (1 if count else 0)  # the comma before every item but the first
        if size + extra > room:
            break
        count, size = count + 1, size + extra
    return count, size


def headline(samples: SampleColumns, *, started_at: float | None, completed_at: float | None) -> tuple[int, float]:
    """A run's duration in seconds (first to last sample; else from its timestamps) and its
    time-weighted average speed: what the summary leads with, and what runs are compared by."""
    t, speed = samples.arrays()[:2]
    return _headline(t, speed, started_at, completed_at)


def _headline(t: Series, speed: Series, started_at: float | None, completed_at: float | None) -> tuple[int, float]:
    if len(t) >= 2:
        duration = round(float(t[-1] - t[0]))
    elif started_at is not None and completed_at is not None:
        duration = max(0, round(completed_at - started_at))
    else:
        duration = 0
    return duration, time_weighted_average(t, speed)


def rollup_metrics(
    samples: SampleColumns,
    *,
    totals: JobTotals,
    final_status: str,
    started_at: float | None,
    completed_at: float | None,
    disks: Sequence[DiskSummary] = (),
    extra: dict[str, Any] | None = None,
    max_chart_points: int = 100,
    max_bytes: int = 8000,
    figures: CurveFigures | None = None,
) -> dict[str, Any]:
    """The JSON-ready `performance_metrics` of a finished job, at most `max_bytes` when compactly encoded.

    `totals` are the job's byte counts and largest worker count (`JobTotals.last_of(samples)` when the
    caller has nothing better). `extra` fields (anomaly flags, say) are added as they are and counted
    in the size bound. `figures`, when given, are the run's figures over every point, and `samples`
    only the chart's candidates.

    Over budget, the chart loses points (down to 16), then the shortest phases, then the highest-indexed
    disks, and finally chart points down to first/last/peak/minimum; `*_omitted` count what was dropped.
    """
    if max_chart_points < 4:
        raise ValueError(f"max_chart_points must be at least 4, got {max_chart_points}")
    columns = samples.arrays()
    if figures is None:
        durations = _durations(columns[0], columns[3], samples.phase_names())
        speed, nonzero = columns[1], columns[1][columns[1] != 0]
        duration, avg = _headline(*columns[:2], started_at, completed_at)
        figures = CurveFigures(
            len(columns[0]),
            int(speed.max()) if len(speed) else 0,
            int(nonzero.min()) if len(nonzero) else 0,
            duration,
            avg,
            durations,
        )
    durations = figures.phase_durations
    # int() because callers may hand over numpy integers, which json cannot encode.
    ordered = sorted(disks, key=lambda d: d.disk_index)
    disk_list = [{k: int(v) for k, v in msgspec.structs.asdict(d).items()} for d in ordered]
    result = _figures(figures, totals, final_status)
    # Worst case while sizing: the counts can only shrink, and with them their digits.
    result |= {"phase_durations_omitted": len(durations), "disks_omitted": len(disk_list), **(extra or {})}
    room = max_bytes - len(_dumps(result))
    # Longest phases first (sorted is stable: ties keep first appearance); lowest disk indices first.
    ranked = sorted(durations.items(), key=itemgetter(1), reverse=True)
    chart = _Chart(columns, samples.phase_names())
    disk_items = [_dumps(d) for d in disk_list[:MAX_DISKS]]
    idx, phases_kept, disks_kept = _fit(chart, ranked, disk_items, room, max_chart_points)
    if chart.size(idx) > room:
        raise ValueError(f"max_bytes={max_bytes} is too small for even a {len(idx)}-point chart")
    kept = {name for name, _ in ranked[:phases_kept]}
    result["chart_data"] = [chart.point(i) for i in idx]
    result["phase_durations"] = {name: secs for name, secs in durations.items() if name in kept}
    result["phase_durations_omitted"] = len(durations) - phases_kept
    result["disks"] = disk_list[:disks_kept]
    result["disks_omitted"] = len(disk_list) - disks_kept
    return result


def _figures(figures: CurveFigures, totals: JobTotals, final_status: str) -> dict[str, Any]:
    """The summary's fixed fields, its chart, phases and disks still empty (in the job sheet's order)."""
    n, peak, avg = figures.snapshots, figures.peak_speed, figures.avg_speed
    return {
        "duration_seconds": figures.duration,
        "snapshots_recorded": n,
        "peak_speed_bps": peak,
        "avg_speed_bps": round(avg),
        "min_speed_bps": figures.min_nonzero_speed,
        "peak_speed_mbps": round(peak / _MIB, 2),
        "avg_speed_mbps": round(avg / _MIB, 2),
        "chart_data": [],
        "avg_speed_method": "time_weighted",
        "bytes_transferred": totals.bytes_transferred,
        "total_bytes": totals.total_bytes,
        "max_worker_count": totals.max_worker_count,
        "phase_durations": {},
        "phase_durations_omitted": 0,
        "final_status": final_status[:_MAX_STATUS_LENGTH],
        "chart_points_source": n,
        "disks": [],
        "disks_omitted": 0,
    }


class _Chart:
    """A job's speed chart at any point count; each point is encoded once, however often it is sized."""

    def __init__(self, columns: tuple[npt.NDArray[Any], ...], names: list[str]) -> None:
        self.t, self.speed, self.progress, self.codes = columns[:4]
        self.names = names
        self.n = len(self.t)
        self.t0 = float(self.t[0]) if self.n else 0.0
        self._encoded: dict[int, int] = {}  # sample index -> length of its encoded chart point
        self._indices: dict[int, list[int]] = {}  # point count -> chosen indices: shrink() may revisit one

    def point(self, i: int) -> dict[str, Any]:
        return {
            "t": round(float(self.t[i]) - self.t0),
            "s": int(self.speed[i]),
            "p": round(float(self.progress[i]), 2),
            "phase": self.names[self.codes[i]],
        }

    def size(self, idx: list[int]) -> int:
        """Items plus the commas between them: what the chart adds to an empty `[]`."""
        for i in idx:
            if i not in self._encoded:
                self._encoded[i] = len(_dumps(self.point(i)))
        return sum(self._encoded[i] for i in idx) + max(len(idx) - 1, 0)

    def shrink(self, k: int, lowest: int, budget: int) -> tuple[list[int], int, int]:
        """The chart of at most k points (not below `lowest`) that fits `budget`: (indices, size, count)."""
        # Size is about proportional to the point count: scale k to the budget, re-check, repeat.
        while True:
            if k not in self._indices:
                self._indices[k] = chart_indices(self.t, self.speed, k) if self.n else []
            idx = self._indices[k]
            size = self.size(idx)
            if size <= budget or k <= lowest:
                return idx, size, k
            k = max(lowest, min(k - 1, k * max(budget, 0) // size))


def _allot(ranked: list[tuple[str, float]], disk_items: list[str], left: int) -> tuple[int, int, int]:
    """How many phases, then disks, fit in `left` bytes, and the bytes left after them."""
    # Encodes lazily: a job with thousands of distinct phases only pays for those that fit.
    phases_kept, phases_size = _take((_dumps({k: v})[1:-1] for k, v in ranked), left)
    disks_kept, disks_size = _take(disk_items, left - phases_size)
    return phases_kept, disks_kept, left - phases_size - disks_size


def _fit(
    chart: _Chart, ranked: list[tuple[str, float]], disk_items: list[str], room: int, max_points: int
) -> tuple[list[int], int, int]:
    """Chart indices, phases kept and disks kept that share `room` bytes (the chart's size is over
    `room` only when even its 4-point form is)."""
    k = min(max_points, max(chart.n, 4))
    floor = min(k, _CHART_FLOOR)
    phases_kept, disks_kept, left = _allot(ranked, disk_items, room)
    if phases_kept < len(ranked) or disks_kept < len(disk_items):
        k = floor  # phases or disks must already give way, so the chart gets no more than its floor
    idx, size, k = chart.shrink(k, floor, left)
    if size > left:
        # Phases and disks make way for the chart at its floor; only then does the chart go below it.
        idx, size, k = chart.shrink(k, 4, room)
        phases_kept, disks_kept, _ = _allot(ranked, disk_items, room - max(size, 0))
    return idx, phases_kept, disks_kept
