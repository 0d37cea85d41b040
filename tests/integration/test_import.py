"""`sendense import`: an existing job history from a MySQL table or a CSV file, brought in once, on the real stack."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from sqlalchemy import text

from pipeline.jobs.store import JobStore
from pipeline.reconcile.importer import HistoryImporter, csv_rows, mysql_rows
from pipeline.reconcile.store import SummaryReconciler
from tests.support.devstack import PROJECT_DIR
from tests.support.job_sheet import EXAMPLE_METRICS as METRICS


def _history(prefix: str) -> list[dict]:
    """Four jobs of one VM as the job sheet's table holds them, and one row no pipeline would accept."""
    base = {"vm_name": f"{prefix}-vm", "repository_id": "repo-old", "backup_type": "incremental"}
    return [
        {**base, "id": f"{prefix}-1", "status": "completed", "created_at": "2026-10-01 01:00:00",
         "started_at": "2026-10-01 01:00:05", "completed_at": "2026-10-01 01:01:07", "bytes_transferred": 100,
         "total_bytes": 100, "performance_metrics": json.dumps(METRICS)},
        {**base, "id": f"{prefix}-2", "status": "failed", "created_at": "2026-10-02 01:00:00",
         "started_at": "2026-10-02 01:00:05", "completed_at": "2026-10-02 01:30:00", "bytes_transferred": 40,
         "total_bytes": 100, "error_message": "snapshot failed", "performance_metrics": None},
        {**base, "id": f"{prefix}-3", "status": "completed", "created_at": "2026-10-03 01:00:00",
         "started_at": "2026-10-03 01:00:05", "completed_at": "2026-10-03 01:10:05", "bytes_transferred": 200,
         "total_bytes": 200, "performance_metrics": None},
        {**base, "id": f"{prefix}-4", "status": "running", "created_at": "2026-10-04 01:00:00",
         "started_at": "2026-10-04 01:00:05", "completed_at": None, "bytes_transferred": 10, "total_bytes": 200,
         "performance_metrics": None},
        {**base, "id": f"{prefix}-5", "vm_name": "bad/name", "status": "completed",
         "created_at": "2026-10-05 01:00:00", "performance_metrics": None},
    ]  # fmt: skip


@pytest.fixture
def importer(engine, settings):
    store = JobStore(engine)
    return HistoryImporter(engine, store, SummaryReconciler(engine, store), settings.scheduler.chart_max_points)


def _legacy_table(engine, name: str, rows: list[dict]) -> None:
    """The job sheet's backup_jobs columns, in a table of their own (the old system's database)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE `{name}` (id VARCHAR(255) PRIMARY KEY, vm_name VARCHAR(255), "
                "repository_id VARCHAR(255), backup_type VARCHAR(20), status VARCHAR(20), created_at DATETIME, "
                "started_at DATETIME, completed_at DATETIME, error_message TEXT, bytes_transferred BIGINT, "
                "total_bytes BIGINT, performance_metrics JSON)"
            )
        )
        for row in rows:
            values = {k: row.get(k) for k in (
                "id", "vm_name", "repository_id", "backup_type", "status", "created_at", "started_at",
                "completed_at", "error_message", "bytes_transferred", "total_bytes", "performance_metrics",
            )}  # fmt: skip
            conn.execute(
                text(
                    f"INSERT INTO `{name}` VALUES (:id, :vm_name, :repository_id, :backup_type, :status, :created_at, "
                    ":started_at, :completed_at, :error_message, :bytes_transferred, :total_bytes, "
                    ":performance_metrics)"
                ),
                values,
            )


def test_a_mysql_table_of_the_job_sheets_rows_is_imported_once(engine, settings, importer, viewer, unique):
    prefix = f"imp-{unique}"
    table = f"legacy_jobs_{unique}"
    _legacy_table(engine, table, _history(prefix))
    try:
        report = importer.run(mysql_rows(settings.mysql.url, table, batch_size=2), batch_size=2)
        assert (report.read, report.imported, report.already_present, report.rejected) == (5, 4, 0, 1)
        assert report.rejections[0]["id"] == f"{prefix}-5" and "vm_name" in report.rejections[0]["reason"]
        assert report.machines_reconciled == 1

        machine = viewer.get(f"/machines/{prefix}-vm").json()
        kpis = machine["kpis"]
        assert (kpis["total_backups"], kpis["successful"], kpis["failed"], kpis["running"]) == (4, 2, 1, 1)
        assert kpis["total_protected_bytes"] == 300
        assert machine["last_backup"]["backup_id"] == f"{prefix}-4"
        assert machine["rpo"]["last_success_at"].startswith("2026-10-03T01:10:05")

        kept = viewer.get(f"/telemetry/history/{prefix}-1").json()
        assert kept["data_source"] == "rolled_up"
        assert {k: kept["performance_metrics"][k] for k in METRICS} == METRICS
        empty = viewer.get(f"/telemetry/history/{prefix}-3").json()
        assert empty["data_source"] == "rolled_up" and empty["performance_metrics"]["duration_seconds"] == 600
        assert viewer.get(f"/backups/{prefix}-2").json()["error_message"] == "snapshot failed"

        again = importer.run(mysql_rows(settings.mysql.url, table))
        assert (again.imported, again.already_present, again.rejected) == (0, 4, 1), "a second run changes nothing"
        assert viewer.get(f"/machines/{prefix}-vm").json()["kpis"] == kpis
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE `{table}`"))


def test_a_csv_history_is_imported_through_the_command(stack, engine, viewer, tmp_path, unique):
    prefix = f"csv-{unique}"
    path = tmp_path / "history.csv"
    rows = _history(prefix)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)
    assert sum(1 for _ in csv_rows(path)) == 5

    def sendense(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args], cwd=PROJECT_DIR, capture_output=True, text=True, check=False
        )

    dry = sendense("import", "--csv", str(path), "--dry-run")
    assert dry.returncode == 1, "a refused row makes the exit status 1"
    assert json.loads(dry.stdout)["imported"] == 4 and viewer.get(f"/backups/{prefix}-1").status_code == 404
    first = sendense("import", "--csv", str(path))
    assert first.returncode == 1 and f"refused row 5 ({prefix}-5): vm_name" in first.stderr, first.stderr
    assert json.loads(first.stdout)["imported"] == 4
    assert viewer.get(f"/machines/{prefix}-vm").json()["kpis"]["total_backups"] == 4
    second = sendense("import", "--csv", str(path))
    assert json.loads(second.stdout)["imported"] == 0 and json.loads(second.stdout)["already_present"] == 4
    missing = sendense("import", "--csv", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
