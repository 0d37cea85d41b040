"""Alerts: their lifecycle, transitions, outbox, silences, per-rule overrides, and two server-clock job times.

`alerts` holds one row per key (rule + subject) with its state and what was last notified;
`alert_transitions` every change; `alert_notifications` is the outbox, written in the transaction of
the change it notifies, one row per channel, unique per (idempotency key, channel); `alert_silences`
and `alert_rule_overrides` are what operators set through the API; `alert_evaluations` is the one row
every evaluation claims; `pipeline_heartbeats` the pipeline processes' view of their stores.
`backup_jobs.ended_seen_at` and `progress_seen_at` are on the server's clock: when a job ended, and when
its bytes last advanced (what "since the last evaluation" and "stalled" read).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_evaluations",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("watermark", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("runs", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_finished_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_evaluations")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "alert_rule_overrides",
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("vm_name", sa.String(length=255), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.Column("updated_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.PrimaryKeyConstraint("rule", "vm_name", name=op.f("pk_alert_rule_overrides")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "alert_silences",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("vm_name", sa.String(length=255), nullable=True),
        sa.Column("rule", sa.String(length=40), nullable=True),
        sa.Column("starts_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("ends_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("ended_by", sa.String(length=255), nullable=True),
        sa.Column("ended_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_silences")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_alert_silences_ends_at"), "alert_silences", ["ends_at"], unique=False)
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("alert_key", sa.String(length=600), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("vm_name", sa.String(length=255), nullable=True),
        sa.Column("job_id", sa.String(length=255), nullable=True),
        sa.Column("job_type", sa.String(length=20), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("summary", sa.String(length=1000), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("started_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("resolved_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("last_evaluated_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("notified_state", sa.String(length=10), nullable=True),
        sa.Column("notified_severity", sa.String(length=10), nullable=True),
        sa.Column("notify_seq", sa.Integer(), server_default="0", nullable=False),
        sa.Column("acknowledged_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=255), nullable=True),
        sa.Column("ack_comment", sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("alert_key", name=op.f("uq_alerts_alert_key")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_alerts_notified_state_state"), "alerts", ["notified_state", "state"], unique=False)
    op.create_index(op.f("ix_alerts_rule_state"), "alerts", ["rule", "state"], unique=False)
    op.create_index(op.f("ix_alerts_state_severity"), "alerts", ["state", "severity"], unique=False)
    op.create_index(op.f("ix_alerts_vm_name_state"), "alerts", ["vm_name", "state"], unique=False)
    op.create_table(
        "pipeline_heartbeats",
        sa.Column("process", sa.String(length=255), nullable=False),
        sa.Column("seen_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("influx_failing_since", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("mysql_failing_since", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("queue_full_since", mysql.DATETIME(fsp=6), nullable=True),
        sa.Column("detail", sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("process", name=op.f("pk_pipeline_heartbeats")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_table(
        "alert_notifications",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("event", sa.String(length=10), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=10), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("sent_at", mysql.DATETIME(fsp=6), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_alert_notifications_alert_id_alerts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_notifications")),
        sa.UniqueConstraint("idempotency_key", "channel", name=op.f("uq_alert_notifications_idempotency_key_channel")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_alert_notifications_alert_id"), "alert_notifications", ["alert_id"], unique=False)
    op.create_index(
        op.f("ix_alert_notifications_state_channel_next_attempt_at"),
        "alert_notifications",
        ["state", "channel", "next_attempt_at"],
        unique=False,
    )
    op.create_table(
        "alert_transitions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("summary", sa.String(length=1000), nullable=False),
        sa.Column("silenced", sa.Integer(), server_default="0", nullable=False),
        sa.Column("at", mysql.DATETIME(fsp=6), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_alert_transitions_alert_id_alerts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_transitions")),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index(op.f("ix_alert_transitions_alert_id_id"), "alert_transitions", ["alert_id", "id"], unique=False)
    op.add_column("backup_jobs", sa.Column("ended_seen_at", mysql.DATETIME(fsp=6), nullable=True))
    op.add_column("backup_jobs", sa.Column("progress_seen_at", mysql.DATETIME(fsp=6), nullable=True))
    op.create_index(op.f("ix_backup_jobs_ended_seen_at"), "backup_jobs", ["ended_seen_at"], unique=False)

    op.execute("INSERT INTO alert_evaluations (id, runs) VALUES (1, 0)")
    # Naming external_change_at keeps this backfill from marking every job as changed outside the job store.
    op.execute(
        "UPDATE backup_jobs SET ended_seen_at = completed_at, external_change_at = external_change_at "
        "WHERE completed_at IS NOT NULL"
    )


def downgrade() -> None:
    # Dropping a table drops its indexes (dropping an index a foreign key needs first would fail).
    for table in (
        "alert_transitions",
        "alert_notifications",
        "pipeline_heartbeats",
        "alerts",
        "alert_silences",
        "alert_rule_overrides",
        "alert_evaluations",
    ):
        op.drop_table(table)
    op.drop_index("ix_backup_jobs_ended_seen_at", table_name="backup_jobs")
    op.drop_column("backup_jobs", "progress_seen_at")
    op.drop_column("backup_jobs", "ended_seen_at")
