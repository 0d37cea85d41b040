"""Estate views' shaping: timeline bars and series, grid cells, size bars, cumulative area, week-over-week rows,
and the download URLs → API requests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dashboards.app.download_links import api_request, download_url
from dashboards.app.estate_shaping import (
    OUTCOME_COLORS,
    cumulative_columns,
    day_factor,
    grid_columns,
    parse_moment,
    size_bar_columns,
    timeline_bar_columns,
    timeline_range,
    timeline_rows,
    timeline_series,
    week_over_week_rows,
)

H = 3_600_000.0  # an hour in ms


def _ms(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000


def _bar(job: str, vm: str, repo: str, start: str, end: str, status: str = "completed", speed: int = 0) -> dict:
    return {"backup_id": job, "vm_name": vm, "repository_id": repo, "type": "full", "job_type": "backup",
            "status": status, "start": start + "Z", "end": end + "Z", "avg_speed_bps": speed}  # fmt: skip


BARS = [
    _bar("j1", "web-2", "repo-b", "2026-03-01T01:00:00", "2026-03-01T02:30:00", speed=2 * 1_048_576),
    _bar("j2", "db-1", "repo-a", "2026-03-01T00:00:00", "2026-03-01T00:10:00", status="failed"),
    _bar("j3", "web-1", "repo-b", "2026-03-01T03:00:00", "2026-03-01T03:00:30", status="running"),
    _bar("j4", "db-1", "repo-a", "2026-03-01T05:00:00", "2026-03-01T06:00:00"),
]


def test_timeline_rows_group_machines_under_their_repository_in_order():
    assert timeline_rows(BARS) == [("repo-a", "db-1"), ("repo-b", "web-1"), ("repo-b", "web-2")]


def test_timeline_bars_of_a_page_keep_their_start_end_and_status_colour():
    cols = timeline_bar_columns(BARS, [("repo-a", "db-1")])
    assert cols["backup_id"] == ["j2", "j4"]
    assert cols["y"] == [("repo-a", "db-1")] * 2
    assert cols["left"] == [_ms("2026-03-01T00:00:00"), _ms("2026-03-01T05:00:00")]
    assert cols["right"][1] - cols["left"][1] == H
    assert cols["color"] == ["#d73027", "#1a9850"]
    assert cols["duration"] == ["10m 00s", "1h 00m 00s"]
    other = timeline_bar_columns(BARS, [("repo-b", "web-2")])
    assert other["speed_mbps"] == [2.0] and other["start_label"] == ["2026-03-01 01:00:00"]


def test_timeline_series_buckets_end_where_the_next_begins_and_the_last_at_the_range_end():
    buckets = [
        {"start": "2026-03-01T00:00:00Z", "running": 2, "speed_bps": 3 * 1_048_576},
        {"start": "2026-03-01T12:00:00Z", "running": 0, "speed_bps": 0},
    ]
    cols = timeline_series(buckets, "2026-03-02T00:00:00Z")
    assert cols["right"] == [_ms("2026-03-01T12:00:00"), _ms("2026-03-02T00:00:00")]
    assert cols["running"] == [2, 0] and cols["speed_mbps"] == [3.0, 0.0]
    assert timeline_series([], None)["left"] == []


def test_grid_cells_are_one_rect_per_machine_and_day_with_the_outcome_colour_and_the_first_machine_on_top():
    page = {
        "days": ["2026-03-01", "2026-03-02"],
        "machines": [
            {"vm_name": "a", "cells": ["success", "warning"]},
            {"vm_name": "b", "cells": ["failed", "none"]},
        ],
    }
    days, names, cells = grid_columns(page)
    assert days == [("Mar 2026", "01"), ("Mar 2026", "02")] and names == ["b", "a"]
    assert cells["x"][:2] == days
    assert list(zip(cells["vm_name"], cells["day"], cells["outcome"], strict=True)) == [
        ("a", "2026-03-01", "success"), ("a", "2026-03-02", "warning"),
        ("b", "2026-03-01", "failed"), ("b", "2026-03-02", "none"),
    ]  # fmt: skip
    assert cells["color"] == [OUTCOME_COLORS[o] for o in ("success", "warning", "failed", "none")]
    assert cells["label"][1] == "success after a failure" and cells["label"][3] == "no backup"
    assert grid_columns({"days": [], "machines": []}) == ([], [], {k: [] for k in cells})
    assert day_factor("2026-12-31") == ("Dec 2026", "31")


TREND = [
    {"created_at": "2026-03-01T00:00:00Z", "status": "completed", "size_bytes": 1024**3, "type": "full"},
    {"created_at": "2026-03-02T00:00:00Z", "status": "failed", "size_bytes": 512 * 1024**2, "type": "incremental"},
    {"created_at": "2026-03-03T00:00:00Z", "status": "running", "size_bytes": 99, "type": "incremental"},
    {"created_at": "2026-03-04T00:00:00Z", "status": "completed", "size_bytes": 1024**3 // 2, "type": "incremental"},
]


def test_size_bars_number_the_finished_jobs_oldest_first_and_leave_running_ones_out():
    cols = size_bar_columns(TREND)
    assert cols["n"] == [1, 2, 3]
    assert cols["size_mb"] == [1024.0, 512.0, 512.0]
    assert cols["size_label"] == ["1.0 GB", "512.0 MB", "512.0 MB"]
    assert cols["status"] == ["completed", "failed", "completed"]


def test_cumulative_bytes_sum_the_finished_jobs_in_gigabytes():
    cols = cumulative_columns(TREND)
    assert cols["cumulative_gb"] == [1.0, 1.5, 2.0]
    assert cols["total_label"][-1] == "2.0 GB"
    assert cols["created"][0] == _ms("2026-03-01T00:00:00")
    assert cumulative_columns([])["cumulative_gb"] == []


def test_week_over_week_rows_show_each_figure_with_its_signed_change():
    week = {
        "figures": {
            "jobs": {"now": 14, "before": 7, "change_percent": 100.0},
            "success_rate": {"now": 85.0, "before": 100.0, "change_points": -15.0},
            "avg_duration_seconds": {"now": 1380.0, "before": 1000.0, "change_percent": 38.0},
            "avg_size_bytes": {"now": 1024**3, "before": 1024**3, "change_percent": 0.0},
            "avg_speed_bps": {"now": 1_048_576, "before": None, "change_percent": None},
        },
        "sentences": [],
    }
    rows = {r["name"]: r for r in week_over_week_rows(week)}
    assert [r["label"] for r in week_over_week_rows(week)][0] == "Jobs"
    assert (rows["jobs"]["now"], rows["jobs"]["before"], rows["jobs"]["change"]) == ("14", "7", "+100.0 %")
    assert rows["success_rate"]["change"] == "−15.0 pts" and rows["success_rate"]["direction"] == "down"
    assert rows["avg_duration_seconds"]["now"] == "23m 00s" and rows["avg_duration_seconds"]["change"] == "+38.0 %"
    assert rows["avg_size_bytes"]["change"] == "0 %"
    assert [rows[n]["tone"] for n in ("jobs", "success_rate", "avg_duration_seconds", "avg_speed_bps")] == [
        "neutral", "worse", "worse", "neutral",
    ]  # fmt: skip
    faster = week_over_week_rows({"figures": {"avg_speed_bps": {"now": 2, "before": 1, "change_percent": 100.0}}})
    assert faster[-1]["tone"] == "better"
    assert (rows["avg_speed_bps"]["now"], rows["avg_speed_bps"]["before"]) == ("1.00 MB/s", "—")
    assert rows["avg_speed_bps"]["change"] == "—"


def test_week_over_week_with_nothing_at_all_shows_dashes():
    rows = week_over_week_rows(None)
    assert len(rows) == 5 and {r["now"] for r in rows} == {"—"} and {r["change"] for r in rows} == {"—"}


NOW = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)


def test_the_timeline_ranges_end_now_and_a_custom_one_is_read_as_utc():
    assert timeline_range(0, "", "", NOW) == ("2026-03-28T12:00:00Z", "2026-03-29T12:00:00Z")
    assert timeline_range(1, "x", "y", NOW) == ("2026-03-22T12:00:00Z", "2026-03-29T12:00:00Z")
    assert timeline_range(2, "2026-03-01 06:00", "2026-03-08 06:00", NOW) == (
        "2026-03-01T06:00:00Z",
        "2026-03-08T06:00:00Z",
    )
    assert timeline_range(2, "2026-03-01T08:00+02:00", "2026-03-01 07:00", NOW)[0] == "2026-03-01T06:00:00Z"


@pytest.mark.parametrize(
    ("start", "end", "says"),
    [
        ("yesterday", "2026-03-08 06:00", "YYYY-MM-DD HH:MM"),
        ("2026-03-08 06:00", "2026-03-08 06:00", "after From"),
        ("2026-03-01 06:00", "2026-03-08 06:01", "at most 7 days"),
    ],
)
def test_a_custom_timeline_range_the_api_would_refuse_is_refused_first(start, end, says):
    with pytest.raises(ValueError, match=says):
        timeline_range(2, start, end, NOW)


def test_an_operators_moment_without_a_zone_is_utc():
    assert parse_moment("2026-03-01 12:30") == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_moment("yesterday")


def test_download_urls_leave_empty_parameters_out_and_map_to_the_api():
    assert download_url("estate.pdf", period="7d") == "/download/estate.pdf?period=7d"
    assert download_url("grid.csv", days=30, search="") == "/download/grid.csv?days=30"
    url = download_url("timeline.csv", from_="2026-03-01T00:00:00Z", to="2026-03-02T00:00:00Z")
    assert url == "/download/timeline.csv?from=2026-03-01T00%3A00%3A00Z&to=2026-03-02T00%3A00%3A00Z"
    assert api_request("estate.csv", {"period": "30d", "_": "123"}) == ("/reports/estate.csv", {"period": "30d"})
    assert api_request("machine.pdf", {"vm": "db/01 x", "period": "7d"}) == (
        "/machines/db%2F01%20x/report.pdf",
        {"period": "7d"},
    )


@pytest.mark.parametrize(
    ("kind", "query", "says"),
    [
        ("passwd", {}, "no download"),
        ("estate.pdf", {"period": "1w"}, "period"),
        ("grid.csv", {"days": "91"}, "days"),
        ("grid.csv", {"days": "-1"}, "days"),
        ("timeline.csv", {"from": "now"}, "from"),
        ("machine.pdf", {"period": "7d"}, "vm is missing"),
        ("machine.pdf", {"vm": "x" * 256}, "vm must be"),
    ],
)
def test_download_requests_outside_the_apis_bounds_are_refused(kind, query, says):
    with pytest.raises(ValueError, match=says):
        api_request(kind, query)


def _answer(status: int, body: object, path: str = "/api/v1/reports/estate.pdf"):
    import httpx

    return httpx.Response(status, json=body, request=httpx.Request("GET", f"http://api{path}"))


@pytest.mark.parametrize(
    ("status", "body", "shown", "says"),
    [
        (
            404,
            {"status_code": 404, "detail": "Not Found"},
            404,
            "does not offer this download (/api/v1/reports/estate.pdf",
        ),
        (404, {"detail": "no jobs for a machine named 'x'"}, 404, "Not found: no jobs for a machine named 'x'."),
        (401, {"detail": "bad token"}, 502, "refused the dashboard's token (HTTP 401)"),
        (400, {"detail": "the range must be at most 7 days"}, 400, "HTTP 400: the range must be at most 7 days."),
        (503, {}, 502, "HTTP 503: no reason given."),
    ],
)
def test_an_api_refusal_becomes_a_sentence_with_what_to_do(status, body, shown, says):
    from dashboards.downloads import _refusal

    code, sentence = _refusal(_answer(status, body), "http://api")
    assert code == shown and says in sentence
