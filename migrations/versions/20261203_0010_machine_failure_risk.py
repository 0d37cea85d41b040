"""Failure risk per machine: what its finished runs say about its next backup, kept as its runs end.

`machines.risk_logit` is the history part of the failure-risk score (pipeline/insight/risk.py: the
logit without the RPO margin, which changes with the clock and is added when read) and
`risk_factors` the factors behind it with their reasons; `risk_assessed_at` when they were computed.
The job store writes them after each rollup of one of the machine's jobs and in every reconcile of it;
NULL until then (an existing estate gets them from the next full reconcile, daily, or at once with
`sendense reconcile --all`). No index: GET /machines?sort=risk orders by the logit plus the RPO term,
an expression, as sort=rpo does.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("machines", sa.Column("risk_logit", sa.Double(), nullable=True))
    op.add_column("machines", sa.Column("risk_factors", sa.JSON(), nullable=True))
    op.add_column("machines", sa.Column("risk_assessed_at", mysql.DATETIME(fsp=6), nullable=True))


def downgrade() -> None:
    op.drop_column("machines", "risk_assessed_at")
    op.drop_column("machines", "risk_factors")
    op.drop_column("machines", "risk_logit")
