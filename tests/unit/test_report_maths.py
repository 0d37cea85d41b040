"""Report figures with hand-computed cases: periods, days around DST and month ends, week-over-week, the grid's
cells, the timeline's series, the CSV."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from pipeline.reports.compare import Figures, compare_periods
from pipeline.reports.exports import csv_chunks
from pipeline.reports.grid import day_outcome
from pipeline.reports.periods import day_bounds, days_back, local_day, parse_period
from pipeline.reports.timeline import bars_and_series

BERLIN = ZoneInfo("Europe/Berlin")
UTC_ZONE = ZoneInfo("UTC")
NOW = datetime(2026, 12, 3, 10, 0)


def test_relative_periods_end_now():
    period = parse_period("7d", None, None, NOW, BERLIN)
    assert (period.start, period.end, period.label) == (NOW - timedelta(days=7), NOW, "last 7 days")
    assert parse_period(None, None, None, NOW, BERLIN).label == "last 7 days", "7 days by default"
    assert parse_period("24h", None, None, NOW, BERLIN).start == NOW - timedelta(hours=24)
    previous = parse_period("30d", None, None, NOW, BERLIN).previous()
    assert previous.end == NOW - timedelta(days=30) and previous.label == "the 30 days before"
    assert parse_period("7d", None, None, NOW, BERLIN).previous().label == "the week before"


def test_to_alone_is_the_week_ending_then():
    period = parse_period(None, None, datetime(2026, 7, 8, 2, 0), NOW, BERLIN)
    assert period.end - period.start == timedelta(days=7) and period.end == datetime(2026, 7, 8, 0, 0)


def test_from_and_to_without_a_zone_are_in_the_display_zone():
    period = parse_period(None, datetime(2026, 7, 1), datetime(2026, 8, 1), NOW, BERLIN)
    assert period.start == datetime(2026, 6, 30, 22, 0) and period.end == datetime(2026, 7, 31, 22, 0)  # CEST +2


@pytest.mark.parametrize(
    ("period", "start", "end", "reason"),
    [
        ("1w", None, None, "period"),
        ("999d", None, None, "366 days"),
        ("7d", datetime(2026, 1, 1), None, "either period or from/to"),
        (None, datetime(2026, 2, 1), datetime(2026, 1, 1), "after from"),
    ],
)
def test_bad_periods_say_what_is_wrong(period, start, end, reason):
    with pytest.raises(ValueError, match=reason):
        parse_period(period, start, end, NOW, BERLIN)


def test_days_around_daylight_saving_changes_last_23_and_25_hours():
    spring_start, spring_end = day_bounds(date(2026, 3, 29), BERLIN)
    assert spring_end - spring_start == timedelta(hours=23)
    autumn_start, autumn_end = day_bounds(date(2026, 10, 25), BERLIN)
    assert autumn_end - autumn_start == timedelta(hours=25)
    assert autumn_start == datetime(2026, 10, 24, 22, 0) and autumn_end == datetime(2026, 10, 25, 23, 0)


def test_a_month_ends_at_the_local_midnight_that_begins_the_next():
    _, end = day_bounds(date(2026, 1, 31), BERLIN)
    assert end == datetime(2026, 1, 31, 23, 0)  # 1 February 00:00 CET
    assert local_day(datetime(2026, 1, 31, 23, 30), BERLIN) == date(2026, 2, 1)
    assert local_day(datetime(2026, 1, 31, 23, 30), UTC_ZONE) == date(2026, 1, 31)


def test_the_last_thirty_days_end_today_in_the_display_zone():
    late = datetime(2026, 12, 31, 23, 30)  # already 1 January in Berlin
    days = days_back(30, late, BERLIN)
    assert len(days) == 30 and days[-1] == date(2027, 1, 1) and days[0] == date(2026, 12, 3)


def test_week_over_week_changes_and_sentences():
    now = Figures(jobs=14, success_rate=92.9, avg_duration_seconds=1380.0, avg_size_bytes=1e9, avg_speed_bps=5e6)
    before = Figures(jobs=14, success_rate=100.0, avg_duration_seconds=1000.0, avg_size_bytes=1e9, avg_speed_bps=8e6)
    result = compare_periods("db-01", now, before, "the week before")
    assert result["figures"]["avg_duration_seconds"] == {"now": 1380.0, "before": 1000.0, "change_percent": 38.0}
    assert result["figures"]["success_rate"]["change_points"] == -7.1
    assert result["sentences"] == [
        "backups of db-01 took 38 % longer than the week before",
        "backups of db-01 ran 38 % slower than the week before",
    ]


def test_week_over_week_with_an_empty_previous_week_has_no_change_and_no_sentence():
    now = Figures(jobs=3, success_rate=100.0, avg_duration_seconds=60.0, avg_size_bytes=10.0, avg_speed_bps=1.0)
    empty = Figures(jobs=0, success_rate=None, avg_duration_seconds=None, avg_size_bytes=None, avg_speed_bps=None)
    result = compare_periods("db-01", now, empty, "the week before")
    assert all(f.get("change_percent", f.get("change_points")) is None for f in result["figures"].values())
    assert result["sentences"] == []


T = datetime(2026, 12, 1, 2, 0)


@pytest.mark.parametrize(
    ("statuses", "outcome"),
    [
        ([], "none"),
        ([(T, "completed")], "success"),
        ([(T, "failed"), (T + timedelta(hours=1), "completed")], "warning"),
        ([(T + timedelta(hours=1), "completed"), (T, "failed")], "warning"),
        ([(T, "completed"), (T + timedelta(hours=1), "failed")], "failed"),
        ([(T, "running")], "running"),
        ([(T, "cancelled")], "none"),
        ([(T, "failed"), (T + timedelta(hours=2), "running")], "failed"),
    ],
)
def test_a_days_outcome(statuses, outcome):
    assert day_outcome(statuses) == outcome


def _job(i: int, start: datetime, minutes: int | None, size: int = 600, status: str = "completed", speed: int = 0):
    end = None if minutes is None else start + timedelta(minutes=minutes)
    return SimpleNamespace(
        id=f"j{i}", vm_name=f"vm{i}", repository_id="r", backup_type="full", job_type="backup", status=status,
        created_at=start, started_at=start, completed_at=end, bytes_transferred=size, transfer_speed_bps=speed,
    )  # fmt: skip


def test_the_timeline_counts_jobs_running_at_once_and_sums_their_speed():
    start = datetime(2026, 12, 1, 0, 0)
    end = start + timedelta(hours=1)
    rows = [
        _job(1, start, 30, size=1800),  # 00:00-00:30, 1 B/s
        _job(2, start + timedelta(minutes=20), 20, size=3600),  # 00:20-00:40, 3 B/s
        _job(3, start - timedelta(hours=3), 30),  # ended before the range: no bar
        _job(4, start + timedelta(minutes=50), None, status="running", speed=7),  # running: its current speed
    ]
    result = bars_and_series(rows, start, end, now=start + timedelta(minutes=55), buckets=6)  # 10-minute buckets
    assert [b["backup_id"] for b in result["bars"]] == ["j1", "j2", "j4"]
    assert [b["running"] for b in result["buckets"]] == [1, 1, 2, 2, 1, 1]
    assert [b["speed_bps"] for b in result["buckets"]] == [1, 1, 4, 4, 3, 7]
    assert result["bars_left_out"] == 0


def test_csv_is_streamed_in_chunks_with_iso_times():
    rows = [(i, datetime(2026, 1, 1, 0, 0, i), f"name, with {i} comma") for i in range(5)]
    chunks = list(csv_chunks(["n", "at", "name"], rows, rows_per_chunk=2))
    assert len(chunks) == 3
    text = b"".join(chunks).decode()
    assert text.splitlines()[0] == "n,at,name"
    assert text.splitlines()[1] == '0,2026-01-01 00:00:00Z,"name, with 0 comma"'
