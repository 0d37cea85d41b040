"""Durable acknowledgement and rollup isolation.

- `backup_jobs.last_snapshot_at`, `backup_disks.last_telemetry_at` / `last_snapshot_at`: the snapshot
  cadence and the "state never goes backwards" guard live in the database, so any number of API
  processes share them.
- `backup_jobs.rollup_attempts`, `rollup_last_error`, `rollup_next_attempt_at`, `rollup_failed_at`: a
  job whose rollup fails is retried with back-off and finally set aside, without stopping the others.
- `backup_jobs.telemetry_pending` is dropped: an update is acknowledged only once its point is in
  InfluxDB, so no API process ever holds points the rollup must wait for.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOMENT = DATETIME(fsp=6)


def upgrade() -> None:
    op.add_column("backup_jobs", sa.Column("last_snapshot_at", MOMENT, nullable=True))
    op.add_column("backup_jobs", sa.Column("rollup_attempts", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("backup_jobs", sa.Column("rollup_last_error", sa.Text(), nullable=True))
    op.add_column("backup_jobs", sa.Column("rollup_next_attempt_at", MOMENT, nullable=True))
    op.add_column("backup_jobs", sa.Column("rollup_failed_at", MOMENT, nullable=True))
    op.create_index("ix_backup_jobs_rollup_failed_at", "backup_jobs", ["rollup_failed_at"])
    op.drop_column("backup_jobs", "telemetry_pending")
    op.add_column("backup_disks", sa.Column("last_telemetry_at", MOMENT, nullable=True))
    op.add_column("backup_disks", sa.Column("last_snapshot_at", MOMENT, nullable=True))


def downgrade() -> None:
    op.drop_column("backup_disks", "last_snapshot_at")
    op.drop_column("backup_disks", "last_telemetry_at")
    op.add_column(
        "backup_jobs", sa.Column("telemetry_pending", sa.Boolean(), nullable=False, server_default=sa.text("0"))
    )
    op.drop_index("ix_backup_jobs_rollup_failed_at", table_name="backup_jobs")
    op.drop_column("backup_jobs", "rollup_failed_at")
    op.drop_column("backup_jobs", "rollup_next_attempt_at")
    op.drop_column("backup_jobs", "rollup_last_error")
    op.drop_column("backup_jobs", "rollup_attempts")
    op.drop_column("backup_jobs", "last_snapshot_at")
