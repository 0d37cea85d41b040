"""The job vocabulary, in one place: job types, backup types, statuses and which statuses are final."""

from __future__ import annotations

from typing import Literal

__all__ = [
    "ACTIVE_STATUSES",
    "BACKUP_TYPES",
    "COMPLETED",
    "JOB_STATUSES",
    "JOB_TYPES",
    "TERMINAL_STATUSES",
    "BackupType",
    "JobStatus",
    "JobType",
    "UpdateStatus",
]

JobType = Literal["backup", "restore", "replication"]
BackupType = Literal["full", "incremental", "differential"]
JobStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
UpdateStatus = Literal["running", "completed", "failed", "cancelled"]

JOB_TYPES = frozenset({"backup", "restore", "replication"})
BACKUP_TYPES = frozenset({"full", "incremental", "differential"})
JOB_STATUSES = frozenset({"pending", "running", "completed", "failed", "cancelled"})
ACTIVE_STATUSES = ("pending", "running")
"""A job in one of these accepts telemetry."""
COMPLETED: JobStatus = "completed"
"""The one final status that counts as a success (a machine's last good backup, a run's baseline)."""
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
"""A job in one of these is finished: it refuses telemetry (409) and is rolled up, failed and cancelled too."""
