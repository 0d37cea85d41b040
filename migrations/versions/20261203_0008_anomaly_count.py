"""The number of anomaly flags of a rolled-up job, copied out of performance_metrics like avg_speed_bps.

Reports count and list a period's unusual runs; reading every summary's JSON for that would cost a JSON
parse per job. Existing summaries are counted by the upgrade (naming external_change_at keeps it from
marking them as changed outside the job store).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("backup_jobs", sa.Column("anomaly_count", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE backup_jobs SET anomaly_count = JSON_LENGTH(JSON_EXTRACT(performance_metrics, '$.anomalies')), "
        "external_change_at = external_change_at "
        "WHERE performance_metrics IS NOT NULL AND JSON_CONTAINS_PATH(performance_metrics, 'one', '$.anomalies')"
    )


def downgrade() -> None:
    op.drop_column("backup_jobs", "anomaly_count")
