"""Validated shapes of what agents send: strict types and bounds, checked by msgspec at the edge."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from pipeline.jobs.vocabulary import BackupType, JobType, UpdateStatus

__all__ = [
    "BatchBody",
    "BatchUpdate",
    "CreateBackup",
    "DiskSpec",
    "JobId",
    "NAME_PATTERN",
    "MachineSpec",
    "Name",
    "StageLoad",
    "TelemetryUpdate",
    "server_job_id",
]

MAX_BIGINT = 2**53 - 1
"""The largest count taken: every JSON client (JavaScript too) holds it exactly; 8 PiB, far beyond a job."""

# Patterns end with END rather than Python's `\Z`: the OpenAPI document carries them to clients in
# other languages, and ECMA-262 (JSON Schema's regex dialect) has no `\Z`. A bare `$` would let one
# trailing newline through in Python; the look-ahead refuses it everywhere.
END = r"$(?![\s\S])"
# Job ids reach InfluxDB tags, SQL and URLs: a safe ASCII character set, bounded.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}" + END
JobId = Annotated[str, Meta(pattern=JOB_ID_PATTERN, description="Letters, digits, '.', '_', '-'; 1-255 chars")]

# VM names and repository ids are what hypervisors allow (spaces, quotes, commas, parentheses,
# non-ASCII letters) but bounded and free of control characters (C0, DEL, C1, line separators),
# and without '/' and '\' (vSphere itself stores those as %2f and %5c in names).
NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029/\\]{1,255}" + END
Name = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=255,
        pattern=NAME_PATTERN,
        description="1-255 characters; no control characters, '/' or '\\'",
    ),
]
Phase = Annotated[
    str, Meta(max_length=100, pattern=r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*" + END, description="0-100 characters")
]
ErrorText = Annotated[
    str, Meta(max_length=4000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*" + END, description="up to 4000 characters")
]
ShortText = Annotated[str, Meta(max_length=255, pattern=r"^[^\x00-\x1f\x7f-\x9f]*" + END)]
ByteCount = Annotated[int, Meta(ge=0, le=MAX_BIGINT)]
Speed = Annotated[int, Meta(ge=0, le=MAX_BIGINT)]
Percent = Annotated[float, Meta(ge=0.0, le=100.0)]
DiskIndex = Annotated[int, Meta(ge=0, le=255)]
WorkerCount = Annotated[int, Meta(ge=0, le=4096)]
Timestamp = Annotated[datetime, Meta(tz=True, description="RFC 3339 with a time zone")]


class StageLoad(msgspec.Struct, forbid_unknown_fields=True):
    """How busy each stage of the data path was since the previous update, in % (0-100), as backup
    engines report it: reading the source, processing (compression, deduplication), the network, and
    writing to the target repository. The busiest one is the bottleneck."""

    source_read: Percent | None = None
    processing: Percent | None = None
    network: Percent | None = None
    target_write: Percent | None = None


class TelemetryUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One telemetry update for one job (or one disk of it, with disk_index)."""

    bytes_transferred: ByteCount
    total_bytes: ByteCount
    transfer_speed_bps: Speed
    progress_percent: Percent
    current_phase: Phase = ""
    status: UpdateStatus = "running"
    disk_index: DiskIndex | None = None
    worker_count: WorkerCount | None = None
    error_message: ErrorText | None = None
    timestamp: Timestamp | None = None
    stage_load: StageLoad | None = None


class BatchUpdate(TelemetryUpdate, kw_only=True, forbid_unknown_fields=True):
    """An update inside a batch: it names its job."""

    job_type: JobType
    job_id: JobId


class BatchBody(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /telemetry/batch`: up to 10,000 updates."""

    updates: Annotated[list[BatchUpdate], Meta(min_length=1, max_length=10_000)]


class LooseBatchBody(msgspec.Struct, forbid_unknown_fields=True):
    """The same body with items left undecoded, to report errors item by item."""

    updates: Annotated[list[msgspec.Raw], Meta(min_length=1, max_length=10_000)]


class DiskSpec(msgspec.Struct, forbid_unknown_fields=True):
    """A disk of a job, declared when the job is created."""

    disk_index: DiskIndex
    size_bytes: ByteCount = 0


class MachineSpec(msgspec.Struct, forbid_unknown_fields=True):
    """What is known of the protected VM."""

    cpu_count: Annotated[int, Meta(ge=0, le=4096)] | None = None
    memory_mb: Annotated[int, Meta(ge=0, le=2**40)] | None = None
    os_type: ShortText | None = None
    protection_flow: ShortText | None = None


class CreateBackup(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /backups` (the job sheet's body works as is)."""

    vm_name: Name
    backup_type: BackupType
    repository_id: Name
    job_type: JobType = "backup"
    backup_id: JobId | None = None
    disks: Annotated[list[DiskSpec], Meta(max_length=256)] = []
    machine: MachineSpec | None = None


def server_job_id(job_type: str, vm_name: str, unix_seconds: int) -> str:
    """`{job_type}-{vm}-{unix_seconds}`, the VM name reduced to ASCII letters, digits, '.', '_', '-'."""
    ascii_name = unicodedata.normalize("NFKD", vm_name).encode("ascii", "ignore").decode()
    reduced = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_name).strip("-._") or "vm"
    return f"{job_type}-{reduced[:200]}-{unix_seconds}"
