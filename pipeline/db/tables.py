"""SQLAlchemy Core tables of the relational store (the Alembic revisions create the same schema)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.mysql import DATETIME, TIMESTAMP

__all__ = [
    "daily_reports",
    "estate_hours",
    "estate_hours_state",
    "alert_evaluations",
    "alert_notifications",
    "alert_rule_overrides",
    "alert_silences",
    "alert_transitions",
    "alerts",
    "pipeline_heartbeats",
    "backup_disks",
    "backup_jobs",
    "job_disk_charts",
    "job_telemetry_snapshots",
    "machines",
    "metadata",
    "summary_reconcile_runs",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Naive UTC with microseconds: every connection sets time_zone to +00:00 (see engine.py).
Moment = DATETIME(fsp=6)


backup_jobs = Table(
    "backup_jobs",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("vm_name", String(255), nullable=False),
    Column("repository_id", String(255), nullable=False),
    Column("backup_type", String(20), nullable=False),
    Column("job_type", String(20), nullable=False, server_default="backup"),
    Column("status", String(20), nullable=False, server_default="pending"),
    Column("created_at", Moment, nullable=False),
    Column("started_at", Moment, nullable=True),
    Column("completed_at", Moment, nullable=True),
    Column("error_message", Text(), nullable=True),
    Column("bytes_transferred", BigInteger(), nullable=False, server_default="0"),
    Column("total_bytes", BigInteger(), nullable=False, server_default="0"),
    Column("transfer_speed_bps", BigInteger(), nullable=False, server_default="0"),
    Column("progress_percent", Numeric(5, 2), nullable=False, server_default="0"),
    Column("current_phase", String(100), nullable=True),
    # Two clocks: the agent's timestamp of its newest update, and the database server's time of the
    # commit that last accepted an update of the job (silence is judged on that one only).
    Column("last_telemetry_at", Moment, nullable=True),
    Column("last_seen_at", Moment, nullable=True),
    Column("performance_metrics", JSON(), nullable=True, comment="Rolled-up telemetry for charts"),
    # Copied out of performance_metrics by the rollup so that it can be indexed portably
    # (a functional index on a JSON path is MySQL-8-only).
    Column("avg_speed_bps", BigInteger(), nullable=True),
    # Also copied out by the rollup: how many anomaly flags the summary carries (NULL: not judged).
    Column("anomaly_count", Integer(), nullable=True),
    # The snapshot cadence of job_telemetry_snapshots, shared by every API process.
    Column("last_snapshot_at", Moment, nullable=True),
    Column("rolled_up_at", Moment, nullable=True),
    Column("purged_at", Moment, nullable=True),
    # Rollup isolation: a failing job is retried with back-off, then set aside (rollup_failed_at).
    Column("rollup_attempts", Integer(), nullable=False, server_default="0"),
    Column("rollup_last_error", Text(), nullable=True),
    Column("rollup_next_attempt_at", Moment, nullable=True),
    Column("rollup_failed_at", Moment, nullable=True),
    # Server's clock (like last_seen_at): when the job ended (terminal update, reaper, import), and when its
    # bytes last advanced. What the alert rules' "since the last evaluation" and "stalled" read.
    Column("ended_seen_at", Moment, nullable=True),
    Column("progress_seen_at", Moment, nullable=True),
    # Set by the database when anyone but the job store inserts or updates the row (the job store keeps it
    # NULL in every write): the machines whose summary `sendense reconcile` must recompute. See migration 0006.
    Column(
        "external_change_at",
        TIMESTAMP(fsp=6),
        nullable=True,
        server_default=text("CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)"),
    ),
    Index(None, "vm_name", "created_at"),
    Index(None, "repository_id", "created_at"),
    Index(None, "status", "rolled_up_at"),
    Index(None, "status", "last_seen_at"),
    Index(None, "rolled_up_at", "purged_at"),
    # The rollup's claim: not rolled up yet, oldest completion first, without reading (and locking) them all.
    Index(None, "rolled_up_at", "completed_at"),
    Index(None, "avg_speed_bps"),
    Index(None, "created_at"),
    Index(None, "rollup_failed_at"),
    Index(None, "external_change_at", "vm_name"),
    Index(None, "ended_seen_at"),
    # Reports: a period's failed jobs, and its unusual runs, without reading the period's other jobs.
    Index(None, "status", "created_at"),
    Index(None, "anomaly_count", "created_at"),
)

backup_disks = Table(
    "backup_disks",
    metadata,
    Column("id", BigInteger(), primary_key=True, autoincrement=True),
    Column("job_id", String(255), ForeignKey("backup_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("disk_index", Integer(), nullable=False),
    Column("size_bytes", BigInteger(), nullable=False, server_default="0"),
    Column("bytes_transferred", BigInteger(), nullable=False, server_default="0"),
    Column("progress_percent", Numeric(5, 2), nullable=False, server_default="0"),
    Column("status", String(20), nullable=False, server_default="pending"),
    # The update time of the state above (never goes backwards) and the disk's snapshot cadence.
    Column("last_telemetry_at", Moment, nullable=True),
    Column("last_snapshot_at", Moment, nullable=True),
    UniqueConstraint("job_id", "disk_index"),
)

machines = Table(
    "machines",
    metadata,
    Column("vm_name", String(255), primary_key=True),
    Column("cpu_count", Integer(), nullable=True),
    Column("memory_mb", BigInteger(), nullable=True),
    Column("os_type", String(255), nullable=True),
    Column("disk_count", Integer(), nullable=True),
    Column("repository_id", String(255), nullable=True),
    Column("protection_flow", String(255), nullable=True),
    Column("created_at", Moment, nullable=False),
    Column("updated_at", Moment, nullable=False),
    # Kept by the job store as jobs are created and end, so the flows table reads one row per machine.
    Column("total_jobs", Integer(), nullable=False, server_default="0"),
    Column("successful", Integer(), nullable=False, server_default="0"),
    Column("failed", Integer(), nullable=False, server_default="0"),
    Column("cancelled", Integer(), nullable=False, server_default="0"),
    Column("protected_bytes", BigInteger(), nullable=False, server_default="0"),
    Column("last_job_id", String(255), nullable=True),
    Column("last_job_at", Moment, nullable=True),
    Column("last_success_at", Moment, nullable=True),
    # Recovery-point objective of this machine, overriding the default (SENDENSE_RPO_DEFAULT).
    Column("rpo_seconds", Integer(), nullable=True),
    # Failure risk: what its last finished runs say (pipeline/insight/risk.py, the logit without the RPO
    # part, and its factors), written by the job store after each rollup and reconcile; NULL until then.
    Column("risk_logit", Double(), nullable=True),
    Column("risk_factors", JSON(), nullable=True),
    Column("risk_assessed_at", Moment, nullable=True),
    Index(None, "last_job_at"),
    Index(None, "last_success_at"),
)

# One row per run of `sendense reconcile`: what it checked and corrected, and where the next run starts.
summary_reconcile_runs = Table(
    "summary_reconcile_runs",
    metadata,
    Column("id", BigInteger(), primary_key=True, autoincrement=True),
    Column("mode", String(20), nullable=False),
    Column("started_at", Moment, nullable=False),
    Column("finished_at", Moment, nullable=False),
    # Jobs marked after this (less an overlap) are what the next `changed` run looks at.
    Column("watermark", Moment, nullable=False),
    Column("machines_checked", Integer(), nullable=False, server_default="0"),
    Column("machines_corrected", Integer(), nullable=False, server_default="0"),
    Column("machines_created", Integer(), nullable=False, server_default="0"),
    Column("corrections", JSON(), nullable=False),
    Index(None, "finished_at"),
)

# The estate per hour of creation (UTC), recomputed from backup_jobs by the scheduler for every hour whose jobs
# changed (written only by pipeline/reports/store.py): what a report of a long period reads instead of its jobs.
estate_hours = Table(
    "estate_hours",
    metadata,
    Column("hour", DATETIME(fsp=0), primary_key=True),
    Column("jobs", Integer(), nullable=False, server_default="0"),
    Column("completed", Integer(), nullable=False, server_default="0"),
    Column("failed", Integer(), nullable=False, server_default="0"),
    Column("cancelled", Integer(), nullable=False, server_default="0"),
    Column("active", Integer(), nullable=False, server_default="0"),
    Column("bytes_completed", BigInteger(), nullable=False, server_default="0"),
    # Seconds, summed over the completed jobs; avg_speed_bps summed over the `speed_jobs` that have one.
    Column("duration_completed", BigInteger(), nullable=False, server_default="0"),
    Column("speed_completed", BigInteger(), nullable=False, server_default="0"),
    Column("speed_jobs", Integer(), nullable=False, server_default="0"),
    Column("unusual", Integer(), nullable=False, server_default="0"),
    # The hour's 10 largest and 10 slowest completed jobs, [[value, job id], ...]: a period's top 10 is theirs.
    Column("largest", JSON(), nullable=False),
    Column("slowest", JSON(), nullable=False),
    Column("computed_at", Moment, nullable=False),
)

# One row: the watermark of the estate summary's refresh (claimed like the alert evaluation).
estate_hours_state = Table(
    "estate_hours_state",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=False),
    Column("watermark", Moment, nullable=True),
)

# The daily report e-mail, one row per report day (written only by pipeline/reports/daily_store.py): claimed
# (by `claim_token` until `claim_expires_at`), sent, or failed (retried from `next_attempt_at`).
daily_reports = Table(
    "daily_reports",
    metadata,
    Column("report_day", Date(), primary_key=True),
    Column("state", String(10), nullable=False),
    Column("attempts", Integer(), nullable=False, server_default="0"),
    Column("claim_token", String(64), nullable=True),
    Column("claimed_by", String(255), nullable=True),
    Column("claim_expires_at", Moment, nullable=True),
    Column("next_attempt_at", Moment, nullable=True),
    Column("last_error", Text(), nullable=True),
    Column("message_id", String(255), nullable=True),
    Column("pdf_bytes", Integer(), nullable=True),
    Column("created_at", Moment, nullable=False),
    Column("sent_at", Moment, nullable=True),
)

# --- alerts (written only by pipeline/alerts/store.py) ---------------------------------------------

# One row per alert key (rule + machine, machine and job type, job, or component): its current state.
alerts = Table(
    "alerts",
    metadata,
    Column("id", BigInteger(), primary_key=True, autoincrement=True),
    Column("alert_key", String(600), nullable=False),
    Column("rule", String(40), nullable=False),
    Column("vm_name", String(255), nullable=True),
    Column("job_id", String(255), nullable=True),
    Column("job_type", String(20), nullable=True),
    Column("state", String(10), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("summary", String(1000), nullable=False),
    Column("details", JSON(), nullable=True),
    Column("started_at", Moment, nullable=False),
    Column("resolved_at", Moment, nullable=True),
    Column("last_evaluated_at", Moment, nullable=False),
    # What was last notified (the lifecycle notifies when it and the state disagree).
    Column("notified_state", String(10), nullable=True),
    Column("notified_severity", String(10), nullable=True),
    Column("notify_seq", Integer(), nullable=False, server_default="0"),
    Column("acknowledged_at", Moment, nullable=True),
    Column("acknowledged_by", String(255), nullable=True),
    Column("ack_comment", String(1000), nullable=True),
    UniqueConstraint("alert_key"),
    Index(None, "state", "severity"),
    Index(None, "vm_name", "state"),
    Index(None, "rule", "state"),
    Index(None, "notified_state", "state"),
)

# Every state change of an alert, and whether a silence withheld its notification.
alert_transitions = Table(
    "alert_transitions",
    metadata,
    Column("id", BigInteger(), primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger(), ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("summary", String(1000), nullable=False),
    Column("silenced", Integer(), nullable=False, server_default="0"),
    Column("at", Moment, nullable=False),
    Index(None, "alert_id", "id"),
)

# The outbox: one row per notification and channel, written in the transaction of the alert's change.
alert_notifications = Table(
    "alert_notifications",
    metadata,
    Column("id", BigInteger(), primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger(), ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("event", String(10), nullable=False),
    Column("idempotency_key", String(100), nullable=False),
    Column("payload", JSON(), nullable=False),
    # pending (due at next_attempt_at), sent, refused (a 4xx: not retried).
    Column("state", String(10), nullable=False, server_default="pending"),
    Column("attempts", Integer(), nullable=False, server_default="0"),
    Column("next_attempt_at", Moment, nullable=False),
    Column("last_error", Text(), nullable=True),
    Column("created_at", Moment, nullable=False),
    Column("sent_at", Moment, nullable=True),
    UniqueConstraint("idempotency_key", "channel"),
    Index(None, "state", "channel", "next_attempt_at"),
    Index(None, "alert_id"),
)

# Silences by machine and/or rule (NULL: any), with who set them and why; deleting one ends it early.
alert_silences = Table(
    "alert_silences",
    metadata,
    Column("id", BigInteger(), primary_key=True, autoincrement=True),
    Column("vm_name", String(255), nullable=True),
    Column("rule", String(40), nullable=True),
    Column("starts_at", Moment, nullable=False),
    Column("ends_at", Moment, nullable=False),
    Column("reason", String(1000), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("created_at", Moment, nullable=False),
    Column("ended_by", String(255), nullable=True),
    Column("ended_at", Moment, nullable=True),
    Index(None, "ends_at"),
)

# Per-rule configuration set through the API, over the settings' defaults; vm_name '' for every machine.
alert_rule_overrides = Table(
    "alert_rule_overrides",
    metadata,
    Column("rule", String(40), primary_key=True),
    Column("vm_name", String(255), primary_key=True),
    Column("config", JSON(), nullable=False),
    Column("updated_by", String(255), nullable=False),
    Column("updated_at", Moment, nullable=False),
)

# One row: the claim every evaluation takes (FOR UPDATE SKIP LOCKED) and where the next one starts.
alert_evaluations = Table(
    "alert_evaluations",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=False),
    Column("watermark", Moment, nullable=True),
    Column("runs", BigInteger(), nullable=False, server_default="0"),
    Column("last_finished_at", Moment, nullable=True),
)

# Each pipeline process's view of its stores, for the pipeline_unhealthy rule (written every few seconds).
pipeline_heartbeats = Table(
    "pipeline_heartbeats",
    metadata,
    Column("process", String(255), primary_key=True),
    Column("seen_at", Moment, nullable=False),
    Column("influx_failing_since", Moment, nullable=True),
    Column("mysql_failing_since", Moment, nullable=True),
    Column("queue_full_since", Moment, nullable=True),
    Column("detail", String(1000), nullable=True),
)

# Each disk's speed curve of a rolled-up job (bounded), kept after its raw points are purged.
job_disk_charts = Table(
    "job_disk_charts",
    metadata,
    Column("job_id", String(255), ForeignKey("backup_jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("disk_index", Integer(), primary_key=True),
    Column("chart_data", JSON(), nullable=False),
)

# The job sheet's table, same columns and index names.
job_telemetry_snapshots = Table(
    "job_telemetry_snapshots",
    metadata,
    Column("id", BigInteger(), primary_key=True, autoincrement=True),
    Column(
        "job_id",
        String(255),
        ForeignKey("backup_jobs.id", ondelete="CASCADE"),
        nullable=False,
        comment="References backup_jobs.id",
    ),
    Column("job_type", String(50), nullable=False, comment="backup, restore, replication"),
    Column("timestamp", TIMESTAMP(fsp=6), nullable=False, server_default=text("CURRENT_TIMESTAMP(6)")),
    Column("bytes_transferred", BigInteger(), server_default="0"),
    Column("total_bytes", BigInteger(), server_default="0"),
    Column("transfer_speed_bps", BigInteger(), server_default="0"),
    Column("progress_percent", Numeric(5, 2), server_default="0.00"),
    Column("current_phase", String(100), nullable=True),
    Column("disk_index", Integer(), nullable=True),
    Column("worker_count", Integer(), nullable=True),
    Index("idx_job_id", "job_id"),
    Index("idx_timestamp", "timestamp"),
    Index("idx_job_timestamp", "job_id", "timestamp"),
    comment="Historical telemetry snapshots for performance charts",
)
