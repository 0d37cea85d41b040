"""The schema: `upgrade head` is idempotent, matches the models, and avoids non-portable SQL."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import inspect

from tests.support.devstack import PROJECT_DIR


def _alembic(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args], cwd=PROJECT_DIR, capture_output=True, text=True, check=False
    )


def test_migrate_runs_twice_without_error(stack):
    stack.migrate()
    stack.migrate()
    check = _alembic("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


def test_schema_has_the_job_sheet_tables_and_indexes(engine):
    inspector = inspect(engine)
    tables = set(inspector.get_table_names())
    assert {"backup_jobs", "backup_disks", "machines", "job_telemetry_snapshots"} <= tables
    snapshot_columns = {c["name"] for c in inspector.get_columns("job_telemetry_snapshots")}
    assert snapshot_columns == {
        "id",
        "job_id",
        "job_type",
        "timestamp",
        "bytes_transferred",
        "total_bytes",
        "transfer_speed_bps",
        "progress_percent",
        "current_phase",
        "disk_index",
        "worker_count",
    }
    indexes = {i["name"] for i in inspector.get_indexes("job_telemetry_snapshots")}
    assert {"idx_job_id", "idx_timestamp", "idx_job_timestamp"} <= indexes
    foreign = inspector.get_foreign_keys("job_telemetry_snapshots")[0]
    assert foreign["referred_table"] == "backup_jobs" and foreign["options"].get("ondelete") == "CASCADE"
    assert "performance_metrics" in {c["name"] for c in inspector.get_columns("backup_jobs")}


def test_generated_sql_avoids_syntax_mysql_8_or_mariadb_rejects():
    upgrade = _alembic("upgrade", "head", "--sql")
    downgrade = _alembic("downgrade", "head:base", "--sql")
    assert upgrade.returncode == 0 and downgrade.returncode == 0, upgrade.stderr + downgrade.stderr
    sql = upgrade.stdout.upper()
    assert "CREATE TABLE BACKUP_JOBS" in sql
    assert "ADD COLUMN IF NOT EXISTS" not in sql, "MariaDB-only syntax"
    assert "IF NOT EXISTS" not in sql
    assert "((CAST(" not in sql and "->>" not in sql, "functional JSON index is MySQL-8-only"
    assert "DROP TABLE BACKUP_JOBS" in downgrade.stdout.upper()
