"""The daily report e-mail: one row per report day, the claim that makes it sent once.

A scheduler that finds the day's report due inserts the day's row (claimed, with a claim that expires) or
takes over a row whose claim expired (its scheduler died mid-send) or whose retry is due (failed); only the
holder of the current claim marks it sent. A row marked sent is never claimed again, so several schedulers,
restarts and kill -9 send the day's report once (pipeline/reports/daily_store.py).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "daily_reports",
        sa.Column("report_day", sa.Date(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claim_token", sa.String(64), nullable=True),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("claim_expires_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("next_attempt_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(255), nullable=True),
        sa.Column("pdf_bytes", sa.Integer(), nullable=True),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("sent_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("report_day", name=op.f("pk_daily_reports")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )


def downgrade() -> None:
    op.drop_table("daily_reports")
