"""Summaries that cannot drift: jobs changed outside the job store are marked, reconcile runs recorded.

`machines` holds per-machine counters kept by the job store. A row of `backup_jobs` written by anyone
else (an imported history, the job sheet's own engine, a restored dump, plain SQL) is marked by the
database itself: `external_change_at` is set by the column's default on INSERT and by ON UPDATE on any
UPDATE that does not name it. The job store names it (keeping it NULL) in every write, so a non-NULL
value means "changed outside the job store at this time" and `sendense reconcile` recomputes those
machines. TIMESTAMP, not DATETIME: its CURRENT_TIMESTAMP is stored in UTC whatever the writer's
session time zone, so marks compare with a watermark. Existing rows get the time of this upgrade: the
first reconcile after it checks every machine.

`summary_reconcile_runs` records each run (what it checked and corrected, the watermark the next run
starts from).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME, TIMESTAMP

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOMENT = DATETIME(fsp=6)


def upgrade() -> None:
    op.add_column(
        "backup_jobs",
        sa.Column(
            "external_change_at",
            TIMESTAMP(fsp=6),
            nullable=True,
            server_default=sa.text("CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)"),
        ),
    )
    op.create_index("ix_backup_jobs_external_change_at_vm_name", "backup_jobs", ["external_change_at", "vm_name"])
    op.create_table(
        "summary_reconcile_runs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("started_at", MOMENT, nullable=False),
        sa.Column("finished_at", MOMENT, nullable=False),
        sa.Column("watermark", MOMENT, nullable=False),
        sa.Column("machines_checked", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("machines_corrected", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("machines_created", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("corrections", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_summary_reconcile_runs"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_summary_reconcile_runs_finished_at", "summary_reconcile_runs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_summary_reconcile_runs_finished_at", table_name="summary_reconcile_runs")
    op.drop_table("summary_reconcile_runs")
    op.drop_index("ix_backup_jobs_external_change_at_vm_name", table_name="backup_jobs")
    op.drop_column("backup_jobs", "external_change_at")
