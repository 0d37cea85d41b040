"""When the daily report is due (pure): the configured time in the display zone, daylight-saving days, retries."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from pipeline.reports.daily import due_day, parse_time_of_day, report_period, retry_delay

BERLIN = ZoneInfo("Europe/Berlin")


def test_yesterday_is_due_once_the_time_of_day_has_passed_in_the_display_zone():
    seven = time(7, 0)
    # 05:30 UTC is 06:30 in Berlin in winter: not yet; 06:00 UTC is 07:00 there: due.
    assert due_day(datetime(2026, 12, 3, 5, 30), BERLIN, seven) is None
    assert due_day(datetime(2026, 12, 3, 6, 0), BERLIN, seven) == date(2026, 12, 2)
    # Caught up later the same day, up to local midnight.
    assert due_day(datetime(2026, 12, 3, 22, 59), BERLIN, seven) == date(2026, 12, 2)
    assert due_day(datetime(2026, 12, 3, 23, 0), BERLIN, seven) is None  # 00:00 on the 4th there
    # Midnight: due at once, the day before's report.
    assert due_day(datetime(2026, 12, 3, 0, 0), ZoneInfo("UTC"), time(0)) == date(2026, 12, 2)


def test_a_report_day_of_a_daylight_saving_change_lasts_23_or_25_hours():
    spring = report_period(date(2026, 3, 29), BERLIN)
    autumn = report_period(date(2026, 10, 25), BERLIN)
    assert spring.length == timedelta(hours=23) and autumn.length == timedelta(hours=25)
    assert spring.start == datetime(2026, 3, 28, 23) and spring.label == "Sunday 29 March 2026"


def test_the_time_of_day_is_hours_and_minutes():
    assert parse_time_of_day("07:00") == time(7) and parse_time_of_day("7:05") == time(7, 5)
    for bad in ("7", "24:00", "07:60", "07:0", "seven", ""):
        with pytest.raises(ValueError, match="HH:MM"):
            parse_time_of_day(bad)


def test_a_failed_send_is_retried_sooner_first_and_at_most_hourly():
    assert [retry_delay(n) for n in (1, 2, 3, 7, 50)] == [60, 120, 240, 3600, 3600]


def test_a_malformed_daily_report_setting_stops_the_process_at_start(monkeypatch):
    from pipeline.settings import ReportSettings

    monkeypatch.setenv("SENDENSE_DAILY_REPORT_TIME", "7am")
    with pytest.raises(ValueError, match="SENDENSE_DAILY_REPORT_TIME"):
        ReportSettings()
    monkeypatch.setenv("SENDENSE_DAILY_REPORT_TIME", "06:30")
    monkeypatch.setenv("SENDENSE_DAILY_REPORT_CLAIM", "5")
    with pytest.raises(ValueError, match="SENDENSE_DAILY_REPORT_CLAIM"):
        ReportSettings()
    monkeypatch.setenv("SENDENSE_DAILY_REPORT_CLAIM", "600")
    monkeypatch.setenv("SENDENSE_DAILY_REPORT_RECIPIENTS", "a@x.test, b@x.test")
    chosen = ReportSettings()
    assert chosen.daily_time == "06:30" and chosen.daily_recipients == ("a@x.test", "b@x.test")
