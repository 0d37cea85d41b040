"""The estate per hour of job creation, and two indexes for reports.

A report of a long period read every job of it (30 days of a 10,000-machine estate: seconds).
`estate_hours` holds, per UTC hour of creation, the jobs by status, bytes, durations, speeds, unusual
runs and the hour's 10 largest and 10 slowest jobs; the scheduler recomputes the hours whose jobs changed
(`estate_hours_state` keeps where it is). The table starts empty: the first refresh computes every hour.
`(status, created_at)` reads a period's failed jobs, `(anomaly_count, created_at)` its unusual runs.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "estate_hours",
        sa.Column("hour", mysql.DATETIME(fsp=0), nullable=False),
        sa.Column("jobs", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cancelled", sa.Integer(), server_default="0", nullable=False),
        sa.Column("active", sa.Integer(), server_default="0", nullable=False),
        sa.Column("bytes_completed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("duration_completed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("speed_completed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("speed_jobs", sa.Integer(), server_default="0", nullable=False),
        sa.Column("unusual", sa.Integer(), server_default="0", nullable=False),
        sa.Column("largest", sa.JSON(), nullable=False),
        sa.Column("slowest", sa.JSON(), nullable=False),
        sa.Column("computed_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("hour", name=op.f("pk_estate_hours")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "estate_hours_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("watermark", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_estate_hours_state")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(
        op.f("ix_backup_jobs_anomaly_count_created_at"), "backup_jobs", ["anomaly_count", "created_at"], unique=False
    )
    op.create_index(op.f("ix_backup_jobs_status_created_at"), "backup_jobs", ["status", "created_at"], unique=False)

    op.execute("INSERT INTO estate_hours_state (id) VALUES (1)")


def downgrade() -> None:
    op.drop_index(op.f("ix_backup_jobs_status_created_at"), table_name="backup_jobs")
    op.drop_index(op.f("ix_backup_jobs_anomaly_count_created_at"), table_name="backup_jobs")
    op.drop_table("estate_hours_state")
    op.drop_table("estate_hours")
