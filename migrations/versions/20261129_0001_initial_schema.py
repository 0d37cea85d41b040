"""Initial schema: backup_jobs (with performance_metrics), backup_disks, machines, job_telemetry_snapshots.

Portable to MySQL 8 and MariaDB 10.6+: no `ADD COLUMN IF NOT EXISTS`, no functional JSON index
(the rollup copies avg_speed_bps into a plain indexed column instead).

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME, TIMESTAMP

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOMENT = DATETIME(fsp=6)
TABLE_OPTIONS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.create_table(
        "backup_jobs",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("vm_name", sa.String(255), nullable=False),
        sa.Column("repository_id", sa.String(255), nullable=False),
        sa.Column("backup_type", sa.String(20), nullable=False),
        sa.Column("job_type", sa.String(20), nullable=False, server_default="backup"),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("started_at", MOMENT, nullable=True),
        sa.Column("completed_at", MOMENT, nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("bytes_transferred", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("transfer_speed_bps", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("progress_percent", sa.Numeric(5, 2), nullable=False, server_default="0"),
        sa.Column("current_phase", sa.String(100), nullable=True),
        sa.Column("last_telemetry_at", MOMENT, nullable=True),
        sa.Column("performance_metrics", sa.JSON(), nullable=True, comment="Rolled-up telemetry for charts"),
        sa.Column("avg_speed_bps", sa.BigInteger(), nullable=True),
        sa.Column("telemetry_pending", sa.Boolean(), nullable=False, server_default=sa.text("0")),
        sa.Column("rolled_up_at", MOMENT, nullable=True),
        sa.Column("purged_at", MOMENT, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_backup_jobs"),
        **TABLE_OPTIONS,
    )
    for columns in (
        ("vm_name", "created_at"),
        ("repository_id", "created_at"),
        ("status", "rolled_up_at"),
        ("status", "last_telemetry_at"),
        ("rolled_up_at", "purged_at"),
        ("avg_speed_bps",),
        ("created_at",),
    ):
        op.create_index(f"ix_backup_jobs_{'_'.join(columns)}", "backup_jobs", list(columns))

    op.create_table(
        "backup_disks",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(255), nullable=False),
        sa.Column("disk_index", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("bytes_transferred", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("progress_percent", sa.Numeric(5, 2), nullable=False, server_default="0"),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.PrimaryKeyConstraint("id", name="pk_backup_disks"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["backup_jobs.id"], name="fk_backup_disks_job_id_backup_jobs", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("job_id", "disk_index", name="uq_backup_disks_job_id_disk_index"),
        **TABLE_OPTIONS,
    )

    op.create_table(
        "machines",
        sa.Column("vm_name", sa.String(255), nullable=False),
        sa.Column("cpu_count", sa.Integer(), nullable=True),
        sa.Column("memory_mb", sa.BigInteger(), nullable=True),
        sa.Column("os_type", sa.String(255), nullable=True),
        sa.Column("disk_count", sa.Integer(), nullable=True),
        sa.Column("repository_id", sa.String(255), nullable=True),
        sa.Column("protection_flow", sa.String(255), nullable=True),
        sa.Column("created_at", MOMENT, nullable=False),
        sa.Column("updated_at", MOMENT, nullable=False),
        sa.PrimaryKeyConstraint("vm_name", name="pk_machines"),
        **TABLE_OPTIONS,
    )

    op.create_table(
        "job_telemetry_snapshots",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(255), nullable=False, comment="References backup_jobs.id"),
        sa.Column("job_type", sa.String(50), nullable=False, comment="backup, restore, replication"),
        sa.Column("timestamp", TIMESTAMP(fsp=6), nullable=False, server_default=sa.text("CURRENT_TIMESTAMP(6)")),
        sa.Column("bytes_transferred", sa.BigInteger(), server_default="0"),
        sa.Column("total_bytes", sa.BigInteger(), server_default="0"),
        sa.Column("transfer_speed_bps", sa.BigInteger(), server_default="0"),
        sa.Column("progress_percent", sa.Numeric(5, 2), server_default="0.00"),
        sa.Column("current_phase", sa.String(100), nullable=True),
        sa.Column("disk_index", sa.Integer(), nullable=True),
        sa.Column("worker_count", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_job_telemetry_snapshots"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["backup_jobs.id"], name="fk_job_telemetry_snapshots_job_id_backup_jobs", ondelete="CASCADE"
        ),
        comment="Historical telemetry snapshots for performance charts",
        **TABLE_OPTIONS,
    )
    op.create_index("idx_job_id", "job_telemetry_snapshots", ["job_id"])
    op.create_index("idx_timestamp", "job_telemetry_snapshots", ["timestamp"])
    op.create_index("idx_job_timestamp", "job_telemetry_snapshots", ["job_id", "timestamp"])


def downgrade() -> None:
    op.drop_table("job_telemetry_snapshots")
    op.drop_table("machines")
    op.drop_table("backup_disks")
    op.drop_table("backup_jobs")
