"""The server's clock beside the agent's: when the server last accepted an update of each job.

`last_telemetry_at` is the agent's timestamp of its newest update; an agent that sends late (after an
outage, from an outbox) or whose clock is behind makes it look old although the job is streaming.
`last_seen_at` is the database server's time of the commit that last accepted an update of the job:
silence (the reaper) is judged on it, and its index replaces the one on `last_telemetry_at`, which
only the reaper read. Existing rows take their agent time as the best estimate there is.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("backup_jobs", sa.Column("last_seen_at", DATETIME(fsp=6), nullable=True))
    op.execute("UPDATE backup_jobs SET last_seen_at = last_telemetry_at WHERE last_telemetry_at IS NOT NULL")
    op.create_index("ix_backup_jobs_status_last_seen_at", "backup_jobs", ["status", "last_seen_at"])
    op.drop_index("ix_backup_jobs_status_last_telemetry_at", table_name="backup_jobs")


def downgrade() -> None:
    op.create_index("ix_backup_jobs_status_last_telemetry_at", "backup_jobs", ["status", "last_telemetry_at"])
    op.drop_index("ix_backup_jobs_status_last_seen_at", table_name="backup_jobs")
    op.drop_column("backup_jobs", "last_seen_at")
