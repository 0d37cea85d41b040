"""Per-disk speed curves of rolled-up jobs.

The rollup keeps each disk's curve (at most 60 points a disk, 32 disks) beside the job's summary, so
the Performance tab can draw per-disk curves after the raw points are gone. Rows go with their job.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_disk_charts",
        sa.Column("job_id", sa.String(255), nullable=False),
        sa.Column("disk_index", sa.Integer(), nullable=False),
        sa.Column("chart_data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "disk_index", name="pk_job_disk_charts"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["backup_jobs.id"], name="fk_job_disk_charts_job_id_backup_jobs", ondelete="CASCADE"
        ),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )


def downgrade() -> None:
    op.drop_table("job_disk_charts")
