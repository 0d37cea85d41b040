"""Unit tests of the pure rollup maths: averages, phases, downsampling and the bounded metrics JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from pipeline.rollup.downsample import chart_indices, lttb_indices
from pipeline.rollup.metrics import (
    DiskSummary,
    JobTotals,
    SampleColumns,
    phase_durations,
    rollup_metrics,
    time_weighted_average,
)
from tests.support.job_sheet import ADDED_FIELDS, JOB_SHEET_FIELDS

T0 = 1_764_000_000.0
# Every field the summary must carry, with its JSON type: the job sheet's and ours.
METRICS_FIELDS = {**JOB_SHEET_FIELDS, **ADDED_FIELDS}


def encoded_size(metrics: dict[str, Any]) -> int:
    return len(json.dumps(metrics, separators=(",", ":")))


def columns(times, speeds, phases=None, progress=None) -> SampleColumns:
    n = len(times)
    samples = SampleColumns()
    samples.extend(
        [T0 + t for t in times],
        speeds,
        progress if progress is not None else [100 * i / max(n - 1, 1) for i in range(n)],
        phases if phases is not None else ["transfer"] * n,
        [i * 1000 for i in range(n)],
        [n * 1000] * n,
        [4] * n,
    )
    return samples


def rollup(samples: SampleColumns, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("final_status", "completed")
    kwargs.setdefault("started_at", None)
    kwargs.setdefault("completed_at", None)
    kwargs.setdefault("totals", JobTotals.last_of(samples))
    return rollup_metrics(samples, **kwargs)


def big_job(n: int, *, seed: int = 7, phase_len: int = 10) -> tuple[SampleColumns, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.uniform(0.5, 1.5, n))
    speeds = rng.integers(1_000_000, 400_000_000, n)
    speeds[rng.choice(n, n // 10, replace=False)] = 0  # stalls
    lo, hi = rng.choice(np.arange(1, n - 1), 2, replace=False)
    speeds[hi] = 900_000_000  # a unique peak and a unique slowest non-zero sample, far from the ends
    speeds[lo] = 17
    phases = [("a" if i < n // 3 else "b" if i < 2 * n // 3 else "c") * phase_len for i in range(n)]
    return columns(times.tolist(), speeds.tolist(), phases), times, speeds


def assert_chart_invariants(metrics: dict[str, Any], times: np.ndarray, speeds: np.ndarray, limit: int) -> None:
    chart = metrics["chart_data"]
    assert len(chart) <= limit
    ts = [p["t"] for p in chart]
    assert ts == sorted(ts)
    assert chart[0]["t"] == 0 and chart[0]["s"] == speeds[0]
    assert chart[-1]["t"] == round(times[-1] - times[0]) and chart[-1]["s"] == speeds[-1]
    kept = {(p["t"], p["s"]) for p in chart}
    peak = int(speeds.argmax())
    assert (round(times[peak] - times[0]), int(speeds[peak])) in kept
    nonzero = speeds[speeds != 0]
    if len(nonzero):
        low = int(np.flatnonzero(speeds == nonzero.min())[0])
        assert (round(times[low] - times[0]), int(speeds[low])) in kept


# --- time-weighted average ---------------------------------------------------------------------------


def test_time_weighted_average_is_the_trapezoid_integral_over_the_span_not_the_mean() -> None:
    # 100 B/s for 1 s, then a ramp 100 -> 1000 B/s over 9 s: (100*1 + 550*9) / 10 = 505.
    assert time_weighted_average([0, 1, 10], [100, 100, 1000]) == pytest.approx(505.0)
    assert sum([100, 100, 1000]) / 3 == 400


def test_time_weighted_average_edge_cases() -> None:
    assert time_weighted_average([], []) == 0.0
    assert time_weighted_average([5.0], [42]) == 42.0
    assert time_weighted_average([5.0, 5.0, 5.0], [10, 20, 60]) == pytest.approx(30.0)
    with pytest.raises(ValueError):
        time_weighted_average([1, 2], [1])


def test_rollup_reports_the_time_weighted_average_in_bps_and_mib_per_second() -> None:
    metrics = rollup(columns([0, 1, 10], [100, 100, 1000]))
    assert metrics["avg_speed_bps"] == 505
    assert metrics["avg_speed_method"] == "time_weighted"
    assert metrics["peak_speed_bps"] == 1000

    fast = rollup(columns([0, 10], [3 * 1_048_576, 5 * 1_048_576]))
    assert fast["avg_speed_mbps"] == 4.0
    assert fast["peak_speed_mbps"] == 5.0
    assert rollup(columns([0, 1], [1_000_000, 1_000_000]))["avg_speed_mbps"] == 0.95  # 0.9537 MiB/s


# --- min speed, workers, totals ----------------------------------------------------------------------


def test_min_speed_ignores_zero_samples() -> None:
    assert rollup(columns([0, 1, 2, 3], [0, 500, 0, 300]))["min_speed_bps"] == 300


def test_min_speed_is_zero_when_every_sample_is_zero() -> None:
    metrics = rollup(columns([0, 1, 2], [0, 0, 0]))
    assert metrics["min_speed_bps"] == 0
    assert metrics["peak_speed_bps"] == 0
    assert len(metrics["chart_data"]) == 3


def test_totals_come_from_the_last_sample_and_workers_from_the_maximum() -> None:
    samples = SampleColumns()
    samples.append(T0, 10, 0.0, "init", 0, 0, None)
    samples.append(T0 + 1, 20, 50.0, "transfer", 500, 1000, 8)
    samples.append(T0 + 2, 30, 100.0, "finalize", 1000, 1000, 2)
    metrics = rollup(samples)
    assert (metrics["bytes_transferred"], metrics["total_bytes"]) == (1000, 1000)
    assert metrics["max_worker_count"] == 8

    unknown = SampleColumns()
    unknown.append(T0, 10, 0.0, "init", 0, 0, None)
    assert rollup(unknown)["max_worker_count"] is None


# --- phase durations ---------------------------------------------------------------------------------


def test_phase_durations_attribute_each_interval_to_the_earlier_samples_phase() -> None:
    durations = phase_durations([0, 2, 3, 7.25, 10], ["snapshot", "transfer", "transfer", "snapshot", "finalize"])
    # [0,2) snapshot, [2,3) + [3,7.25) transfer, [7.25,10) snapshot; finalize only ends the job.
    assert durations == {"snapshot": 4.8, "transfer": 5.2, "finalize": 0.0}
    assert list(durations) == ["snapshot", "transfer", "finalize"]


def test_phase_durations_of_no_or_one_sample() -> None:
    assert phase_durations([], []) == {}
    assert phase_durations([T0], ["init"]) == {"init": 0.0}


def test_rollup_includes_phase_durations() -> None:
    metrics = rollup(columns([0, 60, 90], [1, 2, 3], phases=["snapshot", "transfer", "done"]))
    assert metrics["phase_durations"] == {"snapshot": 60.0, "transfer": 30.0, "done": 0.0}


# --- downsampling ------------------------------------------------------------------------------------


def test_lttb_keeps_first_and_last_and_returns_sorted_unique_indices() -> None:
    rng = np.random.default_rng(3)
    xs = np.cumsum(rng.uniform(0.1, 2.0, 5000))
    ys = rng.normal(100, 30, 5000)
    idx = lttb_indices(xs, ys, 100)
    assert len(idx) == 100
    assert idx[0] == 0 and idx[-1] == 4999
    assert idx == sorted(set(idx))


def test_lttb_returns_every_index_when_n_out_is_not_smaller() -> None:
    assert lttb_indices([1, 2, 3], [5, 6, 7], 3) == [0, 1, 2]
    assert lttb_indices([1, 2, 3], [5, 6, 7], 50) == [0, 1, 2]
    assert lttb_indices([], [], 10) == []
    assert lttb_indices(range(10), range(10), 2) == [0, 9]
    with pytest.raises(ValueError):
        lttb_indices([1, 2, 3], [1, 2, 3], 1)


def test_lttb_keeps_an_isolated_spike() -> None:
    ys = [10.0] * 1000
    ys[437] = 5000.0
    assert 437 in lttb_indices(range(1000), ys, 20)


def test_chart_indices_add_peak_and_minimum_non_zero_within_the_limit() -> None:
    n = 10_000
    xs = np.arange(n, dtype=float)
    ys = np.full(n, 1000.0)
    ys[::2] = 0.0  # zeros everywhere: LTTB alone favours them, and they must not count as the minimum
    ys[5001] = 999.0  # the slowest non-zero sample hides among its neighbours
    ys[1235] = 1001.0  # a peak barely above the rest
    for n_out in (4, 5, 10, 100):
        idx = chart_indices(xs, ys, n_out)
        assert len(idx) <= n_out
        assert idx == sorted(set(idx))
        assert {0, n - 1, 1235, 5001} <= set(idx)
    with pytest.raises(ValueError):
        chart_indices(xs, ys, 3)


# --- the rolled-up JSON ------------------------------------------------------------------------------


def test_hundred_thousand_point_job_is_charted_with_its_extremes_under_the_size_bound() -> None:
    samples, times, speeds = big_job(100_000)
    metrics = rollup(samples, max_chart_points=100)
    assert metrics["snapshots_recorded"] == metrics["chart_points_source"] == 100_000
    assert_chart_invariants(metrics, times, speeds, 100)
    assert metrics["peak_speed_bps"] == 900_000_000
    assert metrics["min_speed_bps"] == 17
    last = metrics["chart_data"][-1]
    assert last["p"] == 100.0 and last["phase"] == "c" * 10
    assert metrics["duration_seconds"] == round(times[-1] - times[0])
    assert encoded_size(metrics) <= 8000
    # With short phase names nothing forces the chart below its requested size.
    assert len(metrics["chart_data"]) == 100


@pytest.mark.parametrize("n", [1, 2, 7, 150, 5_000, 100_000])
def test_size_bound_holds_with_hundred_character_phases_and_sixty_four_disks(n: int) -> None:
    if n >= 3:
        samples, times, speeds = big_job(n, phase_len=100)
    else:
        samples, times, speeds = columns(list(range(n)), [5] * n, phases=["z" * 100] * n), None, None
    disks = [
        DiskSummary(i, 99_999, 10_995_116_277_760, 10_995_116_277_760, 10_737_418_240, 9_999_999_999)
        for i in reversed(range(64))
    ]
    metrics = rollup(samples, disks=disks, final_status="completed")
    assert encoded_size(metrics) <= 8000
    assert [d["disk_index"] for d in metrics["disks"]] == list(range(len(metrics["disks"])))
    assert len(metrics["disks"]) + metrics["disks_omitted"] == 64
    assert metrics["disks"][0] == {
        "disk_index": 0,
        "snapshots_recorded": 99_999,
        "bytes_transferred": 10_995_116_277_760,
        "total_bytes": 10_995_116_277_760,
        "peak_speed_bps": 10_737_418_240,
        "avg_speed_bps": 9_999_999_999,
    }
    if times is not None:
        assert_chart_invariants(metrics, times, speeds, 100)


def test_size_bound_holds_with_thousands_of_distinct_phases() -> None:
    n = 20_000
    phases = [f"{i:05d}".ljust(100, "x") for i in range(n)]
    samples = columns(list(range(n)), [1000 + i % 7 for i in range(n)], phases=phases)
    metrics = rollup(samples)
    assert encoded_size(metrics) <= 8000
    assert len(metrics["phase_durations"]) + metrics["phase_durations_omitted"] == n
    assert len(metrics["chart_data"]) >= 4


def test_size_bound_shrinks_only_the_chart_when_that_is_enough() -> None:
    samples, times, speeds = big_job(10_000, phase_len=100)
    disks = [DiskSummary(i, 10, 10**9, 10**9, 10**8, 10**8) for i in range(4)]
    metrics = rollup(samples, disks=disks)
    assert 16 <= len(metrics["chart_data"]) < 100
    assert len(metrics["disks"]) == 4 and metrics["disks_omitted"] == 0
    assert len(metrics["phase_durations"]) == 3 and metrics["phase_durations_omitted"] == 0
    assert 7000 < encoded_size(metrics) <= 8000  # it shrinks to fit, not far below
    assert_chart_invariants(metrics, times, speeds, 100)


def test_smaller_size_budgets_and_chart_limits_are_honoured() -> None:
    samples, times, speeds = big_job(3_000, phase_len=100)
    for max_bytes in (1500, 3000, 20_000):
        metrics = rollup(samples, max_bytes=max_bytes, max_chart_points=250)
        assert encoded_size(metrics) <= max_bytes
        assert_chart_invariants(metrics, times, speeds, 250)
    with pytest.raises(ValueError):
        rollup(samples, max_bytes=300)
    with pytest.raises(ValueError):
        rollup(samples, max_chart_points=3)


def test_zero_samples_still_give_every_job_sheet_field() -> None:
    metrics = rollup(SampleColumns(), final_status="failed", started_at=T0, completed_at=T0 + 125.6)
    for field, kind in METRICS_FIELDS.items():
        assert isinstance(metrics[field], kind), field
    assert metrics["duration_seconds"] == 126
    assert metrics["chart_data"] == []
    assert metrics["phase_durations"] == {}
    assert metrics["final_status"] == "failed"
    assert metrics["snapshots_recorded"] == metrics["chart_points_source"] == 0
    assert metrics["avg_speed_bps"] == metrics["peak_speed_bps"] == metrics["min_speed_bps"] == 0
    assert metrics["avg_speed_mbps"] == metrics["peak_speed_mbps"] == 0.0
    assert rollup(SampleColumns(), started_at=T0, completed_at=None)["duration_seconds"] == 0
    assert rollup(SampleColumns(), started_at=T0, completed_at=T0 - 5)["duration_seconds"] == 0


def test_one_sample_takes_its_duration_from_the_job_timestamps() -> None:
    metrics = rollup(columns([0], [777]), started_at=T0 - 30, completed_at=T0 + 30)
    assert metrics["duration_seconds"] == 60
    assert metrics["avg_speed_bps"] == metrics["min_speed_bps"] == metrics["peak_speed_bps"] == 777
    assert metrics["chart_data"] == [{"t": 0, "s": 777, "p": 0.0, "phase": "transfer"}]


def test_many_samples_take_their_duration_from_the_samples() -> None:
    metrics = rollup(columns([0, 30, 59.6], [1, 2, 3]), started_at=T0 - 1000, completed_at=T0 + 1000)
    assert metrics["duration_seconds"] == 60


def test_every_field_is_a_plain_json_type() -> None:
    samples, _, _ = big_job(1000)
    metrics = rollup(samples, disks=[DiskSummary(0, 1, 2, 3, 4, 5)])
    for field, kind in METRICS_FIELDS.items():
        assert isinstance(metrics[field], kind), field
    point = metrics["chart_data"][1]
    assert [type(point[k]) for k in ("t", "s", "p", "phase")] == [int, int, float, str]
    assert json.loads(json.dumps(metrics)) == metrics  # no numpy scalars, no NaN


def test_chart_points_carry_relative_seconds_rounded_progress_and_phase() -> None:
    samples = columns([0, 1.4, 2.6], [5, 6, 7], phases=["a", "b", "c"], progress=[0, 33.3333, 100])
    assert rollup(samples)["chart_data"] == [
        {"t": 0, "s": 5, "p": 0.0, "phase": "a"},
        {"t": 1, "s": 6, "p": 33.33, "phase": "b"},
        {"t": 3, "s": 7, "p": 100.0, "phase": "c"},
    ]


# --- the sample store --------------------------------------------------------------------------------


def test_samples_appended_out_of_order_are_rolled_up_in_time_order() -> None:
    ordered, shuffled = SampleColumns(), SampleColumns()
    rows = [(T0 + t, s, float(t), f"p{t % 3}", t, 10, 1) for t, s in enumerate([5, 9, 2, 7, 4, 8])]
    for row in rows:
        ordered.append(*row)
    for i in (3, 0, 5, 1, 4, 2):
        shuffled.append(*rows[i])
    assert rollup(shuffled) == rollup(ordered)


def test_extend_matches_append_and_rejects_bad_input_without_changing_the_store() -> None:
    appended, extended = SampleColumns(), SampleColumns()
    rows = [(T0 + t, 100 * t, float(t), "x", t, 5, None if t % 2 else 3) for t in range(5)]
    for row in rows:
        appended.append(*row)
    extended.extend(*zip(*rows, strict=True))
    assert len(extended) == len(appended) == 5
    assert rollup(extended) == rollup(appended)

    with pytest.raises(ValueError):
        extended.extend([T0], [1, 2], [0.0], ["x"], [0], [0], [None])
    with pytest.raises(ValueError):
        extended.extend([math.nan], [1], [0.0], ["x"], [0], [0], [None])
    with pytest.raises(ValueError):
        extended.extend([T0], [1], [0.0], ["x"], [0], [0], [-2])
    with pytest.raises(ValueError):
        extended.append(T0, 1, math.inf, "x", 0, 0, None)
    with pytest.raises(OverflowError):
        extended.append(T0, 1, 0.0, "x", 0, 2**70, None)
    assert len(extended) == 5
    assert all(len(column) == 5 for column in extended.arrays())


def test_totals_given_are_the_totals_kept() -> None:
    """The caller's totals (InfluxDB's aggregates over every disk) are what the summary says, whatever
    the job-level samples last reported."""
    samples = columns([0, 1, 2], [10, 20, 30])
    metrics = rollup(samples, totals=JobTotals(bytes_transferred=7_000, total_bytes=9_000, max_worker_count=None))
    assert (metrics["bytes_transferred"], metrics["total_bytes"], metrics["max_worker_count"]) == (7_000, 9_000, None)
    assert JobTotals.last_of(samples) == JobTotals(2_000, 3_000, 4)
    assert JobTotals.last_of(SampleColumns()) == JobTotals()
