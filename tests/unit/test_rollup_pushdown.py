"""The pure half of the pushed-down rollup, on hand-computed cases."""

from __future__ import annotations

import pytest

from pipeline.rollup.metrics import phase_durations
from pipeline.rollup.pushdown import (
    Bucket,
    JobAggregates,
    Point,
    bucket_width_ms,
    changed_buckets,
    phase_changes,
    phase_runs,
)


def _bucket(start: int, last: str, phases: int = 1) -> Bucket:
    return Bucket(start, 5.0, 1.0, last, phases)


def test_bucket_width_covers_the_span_in_whole_milliseconds():
    assert bucket_width_ms(0, 99_999, 100) == 1000
    assert bucket_width_ms(0, 100_000, 100) == 1001  # the last point must fall inside the last bucket
    assert bucket_width_ms(5, 5, 100) == 1
    with pytest.raises(ValueError):
        bucket_width_ms(0, 10, 0)


def test_changed_buckets_are_mixed_ones_and_ones_starting_in_another_phase():
    buckets = [
        _bucket(0, "a"),
        _bucket(10, "b", phases=2),  # a change inside
        _bucket(20, "b"),
        _bucket(30, "c"),  # a change at its first point
        _bucket(40, "c", phases=2),  # c, d, c: it ends as it began, yet it changed twice
    ]
    assert changed_buckets(buckets, "a") == [1, 3, 4]
    assert changed_buckets([_bucket(0, "b")], "a") == [0]


def test_phase_names_are_compared_as_the_column_keeps_them():
    long_a, long_b = "x" * 100 + "A", "x" * 100 + "B"
    assert changed_buckets([_bucket(0, long_b)], long_a) == []
    assert phase_changes([(long_a, [(1, long_b), (2, None)])]) == [(2, "")]


def test_phase_changes_follow_the_phase_before_each_bucket():
    rows = [("a", [(100, "a"), (110, "b"), (120, "b")]), ("b", [(300, "c"), (310, "b")])]
    assert phase_changes(rows) == [(110, "b"), (300, "c"), (310, "b")]


def test_phase_runs_equal_phase_durations_of_every_point():
    times_ms = [0, 1000, 2500, 4000, 4100, 9000]
    phases = ["a", "a", "b", "a", "c", "c"]
    changes = [(2500, "b"), (4000, "a"), (4100, "c")]
    runs = phase_runs(Point(0, 1, 0.0, "a"), 9000, changes)
    assert runs == {"a": 2.6, "b": 1.5, "c": 4.9}
    assert runs == phase_durations([t / 1000 for t in times_ms], phases)
    assert list(runs) == ["a", "b", "c"]


def test_a_phase_seen_only_at_the_last_point_is_listed_with_zero():
    assert phase_runs(Point(0, 1, 0.0, "a"), 5000, [(5000, "done")]) == {"a": 5.0, "done": 0.0}
    assert phase_durations([0.0, 5.0], ["a", "done"]) == {"a": 5.0, "done": 0.0}


def _aggregates(count: int, first: Point, last: Point, integral: float, buckets=()) -> JobAggregates:
    return JobAggregates(count, first, last, max(first, last, key=lambda p: p.speed), None, integral, buckets, {})


def test_figures_time_weighted_average_is_the_integral_over_the_span():
    agg = _aggregates(3, Point(0, 100, 0.0, "a"), Point(10_000, 300, 100.0, "a"), 2000.0)
    figures = agg.figures(None, None)
    assert (figures.duration, figures.avg_speed, figures.peak_speed, figures.min_nonzero_speed) == (10, 200.0, 300, 0)


def test_one_point_takes_its_duration_from_the_row_and_its_own_speed():
    point = Point(0, 4242, 50.0, "a")
    figures = _aggregates(1, point, point, 0.0).figures(1000.0, 1042.4)
    assert (figures.duration, figures.avg_speed, figures.snapshots) == (42, 4242.0, 1)


def test_curve_puts_bucket_means_inside_the_span_and_keeps_the_exact_points():
    first, last = Point(1005, 10, 0.0, "a"), Point(2995, 30, 100.0, "b")
    peak = Point(2000, 999, 50.0, "a")
    buckets = (Bucket(1005, 20.0, 40.0, "a", 1), Bucket(2005, 25.0, 100.0, "b", 2))
    agg = JobAggregates(10, first, last, peak, Point(1500, 3, 20.0, "a"), 1.0, buckets, {})
    curve = agg.curve()
    t, speed, progress = curve.arrays()[:3]
    assert t.tolist() == [1.005, 1.5, 1.505, 2.0, 2.505, 2.995]
    assert speed.tolist() == [10, 3, 20, 999, 25, 30]
    assert progress.tolist()[2] == 40.0
