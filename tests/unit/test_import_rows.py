"""Rows of an existing job history, validated and made into backup_jobs values (no database)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from pipeline.reconcile.importer import Rejected, job_row
from tests.support.job_sheet import EXAMPLE_METRICS as METRICS

NOW = datetime(2026, 12, 3, 9, 0)
ROW = {
    "id": "backup-pgtest1-1759780872",
    "vm_name": "pgtest1",
    "repository_id": "repo-local-1759780872",
    "backup_type": "incremental",
    "status": "completed",
    "created_at": "2026-10-06 19:01:12",
    "started_at": "2026-10-06 19:01:13",
    "completed_at": "2026-10-06 19:02:15",
    "bytes_transferred": "1073741824",
    "total_bytes": "1073741824",
}


def test_a_job_sheet_row_with_its_summary_keeps_the_summary_and_counts_as_rolled_up():
    row = job_row({**ROW, "performance_metrics": json.dumps(METRICS)}, now=NOW)
    assert row["created_at"] == datetime(2026, 10, 6, 19, 1, 12) and row["bytes_transferred"] == 1073741824
    assert row["job_type"] == "backup", "the job sheet's rows have no job type: backups"
    metrics = row["performance_metrics"]
    assert {k: metrics[k] for k in METRICS} == METRICS
    assert metrics["final_status"] == "completed" and metrics["imported"] is True
    assert metrics["avg_speed_method"] == "as_imported"
    assert row["avg_speed_bps"] == 280000000 and row["rolled_up_at"] == NOW and row["purged_at"] == NOW


def test_a_finished_row_without_a_summary_gets_the_summary_of_a_job_without_points():
    row = job_row(ROW, now=NOW)
    metrics = row["performance_metrics"]
    assert metrics["duration_seconds"] == 62 and metrics["snapshots_recorded"] == 0 and metrics["chart_data"] == []
    assert metrics["bytes_transferred"] == 1073741824 and row["rolled_up_at"] == NOW


def test_a_running_row_is_imported_as_running_with_no_summary():
    row = job_row({**ROW, "status": "running", "completed_at": ""}, now=NOW)
    assert row["performance_metrics"] is None and row["rolled_up_at"] is None and row["completed_at"] is None


def test_the_frontend_field_type_is_read_as_the_backup_type():
    source = {k: v for k, v in ROW.items() if k != "backup_type"} | {"type": "full"}
    assert job_row(source, now=NOW)["backup_type"] == "full"


def test_times_with_a_zone_are_converted_to_utc():
    row = job_row({**ROW, "created_at": "2026-10-06T21:01:12+02:00"}, now=NOW)
    assert row["created_at"] == datetime(2026, 10, 6, 19, 1, 12)


def test_a_long_chart_is_bounded_keeping_first_last_and_peak():
    chart = [{"t": t, "s": 1000 + (t % 17) * 10, "p": t / 10, "phase": "copying"} for t in range(1000)]
    chart[500]["s"] = 99_999
    row = job_row({**ROW, "performance_metrics": {**METRICS, "chart_data": chart}}, max_chart_points=100, now=NOW)
    kept = row["performance_metrics"]["chart_data"]
    assert len(kept) <= 100 and kept[0]["t"] == 0 and kept[-1]["t"] == 999
    assert max(p["s"] for p in kept) == 99_999
    assert row["performance_metrics"]["chart_points_source"] == 1000


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": "bad id/1"}, "id"),
        ({"id": ""}, "id is missing"),
        ({"vm_name": "a/b"}, "vm_name"),
        ({"vm_name": "x" * 256}, "vm_name"),
        ({"vm_name": "line\nbreak"}, "vm_name"),
        ({"status": "done"}, "status"),
        ({"backup_type": "weekly"}, "backup_type"),
        ({"job_type": "archive"}, "job_type"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"created_at": None}, "created_at is missing"),
        ({"bytes_transferred": "-1"}, "bytes_transferred"),
        ({"bytes_transferred": str(2**53)}, "bytes_transferred"),
        ({"bytes_transferred": "12.5"}, "bytes_transferred"),
        ({"progress_percent": "101"}, "progress_percent"),
        ({"performance_metrics": "{not json"}, "performance_metrics is not JSON"),
        ({"performance_metrics": json.dumps({"duration_seconds": 5})}, "performance_metrics"),
        ({"performance_metrics": json.dumps({**METRICS, "chart_data": [{"t": "x"}]})}, "performance_metrics"),
        ({"status": "running", "performance_metrics": json.dumps(METRICS)}, "only finished jobs"),
    ],
)
def test_a_bad_row_is_refused_with_its_reason(change, reason):
    with pytest.raises(Rejected, match=reason):
        job_row({**ROW, **change}, now=NOW)
