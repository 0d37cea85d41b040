"""The report documents' shaping (pure): bounded lists, per-day series in the display zone, empty periods, one job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pipeline.reports.compare import Figures, compare_periods
from pipeline.reports.document import (
    MACHINE_TABLE,
    daily_series,
    estate_document,
    fmt_bytes,
    fmt_duration,
    listing,
    machine_document,
)
from pipeline.reports.hours import HourFigures
from pipeline.reports.periods import Period

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 10, 12, 0)


def _week(jobs_now: int = 0, jobs_before: int = 0) -> dict:
    empty = Figures(jobs_now, None, None, None, None)
    return compare_periods("the estate", empty, Figures(jobs_before, None, None, None, None), "the week before")


def _summary(totals: dict | None = None, failures: list | None = None, out: int = 0, worst: list | None = None) -> dict:
    base = {
        "jobs": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "running": 0,
        "success_rate": None,
        "bytes_protected": 0,
        "machines": 0,
        "unusual_runs": 0,
    }
    return {
        "period": {"label": "last 7 days"},
        "totals": {**base, **(totals or {})},
        "failure_reasons": [],
        "failures": failures or [],
        "out_of_rpo": {"machines": out, "worst": worst or []},
        "unusual_runs": [],
        "slowest": [],
        "largest": [],
        "busiest_hour": None,
        "week_over_week": _week(),
    }


def _failed_job(i: int) -> dict:
    created = datetime(2026, 3, 9, tzinfo=UTC) + timedelta(minutes=i)
    return {
        "backup_id": f"j{i}",
        "vm_name": f"vm-{i}",
        "repository_id": "r",
        "type": "full",
        "job_type": "backup",
        "status": "failed",
        "created_at": created,
        "bytes_transferred": 0,
        "error_message": "disk full",
    }


def test_a_list_longer_than_its_bound_says_how_many_are_left_out():
    assert listing(list(range(25)), limit=10) == listing(list(range(10)), total=25)
    cut = listing(list(range(25)), limit=10)
    assert cut.rows == list(range(10)) and cut.omitted == 15
    assert listing([1, 2], total=2).omitted == 0
    # A total lower than the rows (a count taken a moment earlier) never gives a negative count.
    assert listing([1, 2, 3], total=1).omitted == 0


def test_the_estate_documents_failures_are_bounded_with_the_rest_counted():
    period = Period(NOW - timedelta(days=30), NOW, "last 30 days")
    failures = [_failed_job(i) for i in range(10)]  # the summary lists 10 of them
    summary = _summary(
        {"jobs": 1_000_000, "failed": 12_345},
        failures,
        out=9_000,
        worst=[{"vm_name": "a", "last_success_at": None, "rpo_seconds": 86400, "overdue_ratio": None}],
    )
    doc = estate_document(summary, {}, [], period, UTC_ZONE, NOW)
    assert len(doc.failures.rows) == 10 and doc.failures.omitted == 12_335
    assert doc.out_of_rpo.omitted == 8_999 and doc.out_of_rpo.rows[0]["overdue"] == "never backed up"
    assert ("Jobs", "1,000,000") in doc.figures and ("Failed", "12,345") in doc.figures
    # 30 days ending at noon touch 31 calendar days.
    assert len(doc.series.days) == 31 and doc.series.empty


def test_an_empty_period_has_no_figures_to_divide_and_no_chart_data():
    period = Period(NOW - timedelta(days=7), NOW, "last 7 days")
    doc = estate_document(_summary(), {}, [], period, UTC_ZONE, NOW)
    assert ("Success rate", "–") in doc.figures and ("Busiest hour", "–") in doc.figures
    assert doc.failures.rows == [] and doc.failures.omitted == 0
    assert doc.series.empty and doc.series.success_rate == [None] * 8  # noon to noon: 8 calendar days
    assert [row[0] for row in doc.week_rows][:2] == ["Jobs", "Success rate"]
    assert doc.week_rows[0] == ("Jobs", "0", "0", "–")


def test_hours_are_added_up_per_day_of_the_display_zone():
    # 2026-03-09 22:00 and 23:00 UTC are 23:00 on the 9th and 00:00 on the 10th in Berlin (UTC+1).
    hours = {
        datetime(2026, 3, 9, 22): HourFigures(jobs=3, completed=2, failed=1, bytes_completed=100),
        datetime(2026, 3, 9, 23): HourFigures(jobs=1, completed=1, bytes_completed=50),
    }
    period = Period(datetime(2026, 3, 8, 23), datetime(2026, 3, 10, 23), "two days")
    series = daily_series(hours, period, BERLIN)
    assert series.days == ["2026-03-09", "2026-03-10"]
    assert series.completed == [2, 1] and series.failed == [1, 0] and series.bytes == [100, 50]
    assert series.success_rate == [66.7, 100.0]
    in_utc = daily_series(hours, Period(datetime(2026, 3, 9), datetime(2026, 3, 10), "a day"), UTC_ZONE)
    assert in_utc.days == ["2026-03-09"] and in_utc.completed == [3]


def _machine(last_success: datetime | None) -> dict:
    age = None if last_success is None else (NOW - last_success.replace(tzinfo=None)).total_seconds()
    return {
        "vm_name": "db <01>",
        "rpo": {
            "rpo_seconds": 86400,
            "rpo_source": "default",
            "last_success_at": last_success,
            "age_seconds": age,
            "out_of_rpo": last_success is None,
        },
        "risk": {"score": 0.2, "level": "high", "reasons": ["failed the last 2 runs"]},
    }


def _job(i: int, status: str = "completed") -> dict:
    return {
        "backup_id": f"j{i}",
        "type": "incremental",
        "job_type": "backup",
        "status": status,
        "created_at": datetime(2026, 3, 9, 1, tzinfo=UTC) + timedelta(hours=i),
        "completed_at": None,
        "duration_seconds": 600.0,
        "bytes_transferred": 2 * 1024**3,
        "avg_speed_bps": 3_500_000,
        "error_message": "NBD reset" if status == "failed" else None,
    }


def _totals(jobs: int, failed: int = 0) -> dict:
    return {
        "jobs": jobs,
        "completed": jobs - failed,
        "failed": failed,
        "cancelled": 0,
        "running": 0,
        "success_rate": None,
        "bytes_protected": 0,
        "unusual_runs": 0,
    }


def test_a_machine_with_one_job_has_one_row_and_one_point_per_chart():
    period = Period(NOW - timedelta(days=7), NOW, "last 7 days")
    doc = machine_document(
        _machine(datetime(2026, 3, 9, 1, 10, tzinfo=UTC)), _totals(1), [_job(0)], [], _week(1, 0), period, BERLIN, NOW
    )
    assert len(doc.jobs.rows) == 1 and doc.jobs.omitted == 0
    assert doc.jobs.rows[0]["created"] == "2026-03-09 02:00"  # Berlin
    assert doc.series.duration_minutes == [10.0] and doc.series.size_gib == [2.0]
    assert doc.series.labels == ["03-09 02:00"]
    assert ("State now", "within RPO") in doc.rpo_rows
    assert doc.title == "Backup report: db <01>" and doc.risk_level == "high" and doc.risk_score == "20 %"


def test_a_machines_jobs_table_shows_the_newest_and_counts_the_others():
    period = Period(NOW - timedelta(days=30), NOW, "last 30 days")
    jobs = [_job(i, "failed" if i % 5 == 0 else "completed") for i in range(300, 0, -1)]  # newest first
    doc = machine_document(_machine(None), _totals(2_000, 400), jobs, [], _week(), period, UTC_ZONE, NOW)
    assert len(doc.jobs.rows) == MACHINE_TABLE and doc.jobs.omitted == 2_000 - MACHINE_TABLE
    assert doc.jobs.rows[0]["created"] > doc.jobs.rows[-1]["created"]
    assert len(doc.failures.rows) == 10 and doc.failures.omitted == 390
    assert len(doc.series.started) == 300 and doc.series.started == sorted(doc.series.started)
    assert doc.rpo_rows[0] == ("State now", "out of RPO: never backed up successfully")


def test_sizes_and_durations_read_as_a_person_says_them():
    assert fmt_bytes(0) == "0 B" and fmt_bytes(1536) == "1.5 KiB" and fmt_bytes(5 * 1024**4) == "5.0 TiB"
    assert fmt_duration(45) == "45 s" and fmt_duration(723) == "12 min 03 s" and fmt_duration(7500) == "2 h 05 min"
    assert fmt_bytes(None) == fmt_duration(None) == "–"
