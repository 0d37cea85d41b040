"""The API's response bodies as msgspec Structs: what handlers return and what the OpenAPI document shows.

Request bodies are the validation Structs of `pipeline/ingest/models.py` (and `RpoBody` here). Field
names and types are the job sheet's; fields this project added come after them. A field that some
answers carry and others do not is `UNSET` (left out of the JSON), never a null the job sheet lacks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from api.alert_schemas import ALERT_CONTRACT_TYPES
from api.report_schemas import REPORT_CONTRACT_TYPES, WeekOverWeek
from pipeline.ingest.models import BatchBody, CreateBackup, MachineSpec, Name, TelemetryUpdate
from pipeline.jobs.vocabulary import BackupType, JobStatus, JobType
from pipeline.rollup.metrics import DiskSummary

__all__ = [
    "CONTRACT_TYPES",
    "BackupJob",
    "BackupList",
    "BatchResult",
    "DiskHistory",
    "Error",
    "History",
    "Liveness",
    "MachineDetails",
    "MachineList",
    "Readiness",
    "RegisterMachine",
    "RegisteredMachine",
    "RpoBody",
    "RpoUpdated",
    "UpdateAccepted",
    "UpdateFinished",
]


class Error(Struct):
    """Every error answer: the HTTP status again, a sentence a person can act on, and details of bad fields."""

    status_code: int
    detail: str
    extra: list[dict[str, Any]] | dict[str, Any] | None = None
    """The fields at fault, as Litestar reports them (`key`, `message`, `source`), when known."""


# --- telemetry ---------------------------------------------------------------------------------


class UpdateAccepted(Struct):
    """202: a running update is durable (its point in InfluxDB, the job's state committed in MySQL)."""

    job_id: str
    accepted: bool


class UpdateFinished(Struct):
    """200: a terminal update is durable; the job is finished with this status."""

    job_id: str
    status: JobStatus


class BatchRejection(Struct):
    """One refused item of a batch: its position in `updates`, the status it would have had alone, why."""

    index: int
    status: int
    detail: str


class BatchResult(Struct):
    """202: how many items are durable; the others, each with its reason."""

    accepted: int
    rejected: list[BatchRejection]


class ChartPoint(Struct):
    """A point of a speed chart: seconds since the start, bytes/s, progress %, phase."""

    t: int
    s: int
    p: float
    phase: str


class AnomalyFlag(Struct):
    """One figure of a finished run far from this VM's usual (robust z-score `score`, `ratio` × usual)."""

    metric: Literal["duration_seconds", "bytes_transferred", "avg_speed_bps"]
    value: float
    usual: float
    ratio: float
    score: float
    sentence: str


class Bottleneck(Struct):
    """The busiest stage of the data path and each stage's load in %."""

    stage: str
    label: str
    percent: int
    text: str
    loads: dict[str, float]


class PerformanceMetrics(Struct):
    """The job sheet's rolled-up summary (`avg_speed_bps` time-weighted; `min_speed_bps` the lowest
    non-zero speed), then this project's additions."""

    duration_seconds: int
    snapshots_recorded: int
    peak_speed_bps: int
    avg_speed_bps: int
    min_speed_bps: int
    peak_speed_mbps: float
    avg_speed_mbps: float
    chart_data: list[ChartPoint]
    avg_speed_method: str = "time_weighted"
    bytes_transferred: int = 0
    total_bytes: int = 0
    max_worker_count: int | None = None
    phase_durations: dict[str, float] = {}
    phase_durations_omitted: int = 0
    final_status: str = ""
    chart_points_source: int = 0
    disks: list[DiskSummary] = []
    disks_omitted: int = 0
    bottleneck: Bottleneck | UnsetType = UNSET
    """The mean load of each stage over the run (when the agent reported stage loads)."""
    anomalies: list[AnomalyFlag] | UnsetType = UNSET
    """Completed runs only: how this run compares with the VM's previous runs of its backup type."""
    anomaly_baseline_runs: int | UnsetType = UNSET


class CurrentState(Struct):
    """The job's latest reported figures (the job sheet's `current_state`: no field is ever null)."""

    bytes_transferred: int
    total_bytes: int
    transfer_speed_bps: int
    progress_percent: float
    current_phase: Annotated[str, Meta(description='The last phase reported; "" when none is known, never null.')]
    stage_load: dict[str, float] | UnsetType = UNSET
    """Running jobs: each stage's load in % from the last update (empty when the agent reports none)."""


class RolledUpHistory(Struct, tag_field="data_source", tag="rolled_up"):
    """The job is finished: its summary (stored by the rollup, or until then computed from its points by
    the same code), and nothing of its raw points."""

    job_id: str
    status: JobStatus
    performance_metrics: PerformanceMetrics


class LiveHistory(Struct, tag_field="data_source", tag="live_snapshots"):
    """Running (or finished with a rollup that fails): the chart from the raw points (`chart_source`
    `job_telemetry_snapshots` when InfluxDB does not answer and the MySQL mirror stands in)."""

    job_id: str
    status: JobStatus
    current_state: CurrentState
    chart_data: list[ChartPoint]
    chart_source: Literal["influxdb", "job_telemetry_snapshots"]
    eta_seconds: float | None | UnsetType = UNSET
    """Running jobs: seconds to completion from now, or null with `eta_reason`."""
    eta_at: datetime | None | UnsetType = UNSET
    eta_reason: str | None | UnsetType = UNSET
    bottleneck: Bottleneck | None | UnsetType = UNSET
    """Running jobs: the busiest stage of the last update, null when the agent reports no stage loads."""
    cursor: str | UnsetType = UNSET
    """Charts from InfluxDB: pass it as `since` on the next refresh to get only the points after this
    answer's last."""
    since: str | UnsetType = UNSET
    """Present when the request gave `since`: `chart_data` holds only the points after it (append
    them); absent, `chart_data` is the whole chart (replace it)."""


class NoHistory(Struct, tag_field="data_source", tag="none"):
    """The job exists and has no telemetry."""

    job_id: str
    status: JobStatus
    message: str


History = RolledUpHistory | LiveHistory | NoHistory
"""`GET /telemetry/history/{job_id}`: one of three shapes, told apart by `data_source`."""


class DiskPoint(Struct):
    """A point of one disk's curve: seconds since the job's start, bytes/s, progress %."""

    t: int
    s: int
    p: float


class DiskCurve(Struct):
    disk_index: int
    chart_data: list[DiskPoint]


class DiskHistory(Struct):
    """Each disk's speed curve (`rolled_up`: at most 60 points a disk; `live_snapshots`: about 200)."""

    job_id: str
    status: JobStatus
    data_source: Literal["rolled_up", "live_snapshots", "none"]
    disks: list[DiskCurve]
    cursor: str | UnsetType = UNSET
    """Live curves: pass it as `since` on the next refresh to get only each disk's points after this
    answer's last."""
    since: str | UnsetType = UNSET
    """Present when the request gave `since`: each disk's `chart_data` holds only its points after the
    cursor's for it (append them; a disk not seen before comes whole); absent, every curve is whole."""


# --- backups -----------------------------------------------------------------------------------


class RollupState(Struct):
    """Where the job's rollup stands: done, waiting, retrying after failures, or set aside (failed)."""

    state: Literal["done", "failed", "retrying", "waiting", "not_finished"]
    rolled_up_at: datetime | None
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    failed_at: datetime | None


class JobDisk(Struct):
    disk_index: int
    size_bytes: int
    bytes_transferred: int
    progress_percent: float
    status: str


class BackupJob(Struct):
    """A job (`type` is the backup type, kept for the job sheet's console)."""

    backup_id: str
    vm_name: str
    repository_id: str
    type: BackupType
    backup_type: BackupType
    job_type: JobType
    status: JobStatus
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    duration_seconds: float | None
    bytes_transferred: int
    total_bytes: int
    transfer_speed_bps: int
    progress_percent: float
    current_phase: str | None
    last_telemetry_at: datetime | None
    """The agent's timestamp of its newest update (durations and charts are on this clock)."""
    last_seen_at: datetime | None
    """When the server last accepted an update of this job, on its own clock (silence is judged on this one)."""
    error_message: str | None
    avg_speed_bps: int | None
    has_performance_metrics: bool
    rollup: RollupState
    anomalies: list[AnomalyFlag]
    disks: list[JobDisk]
    eta_seconds: float | None | UnsetType = UNSET
    """`GET /backups/{id}` of a running job: seconds to completion, or null with `eta_reason`."""
    eta_at: datetime | None | UnsetType = UNSET
    eta_reason: str | None | UnsetType = UNSET


class BackupList(Struct):
    """A page of jobs, newest first; `total` counts every match."""

    backups: list[BackupJob]
    total: int


# --- machines ----------------------------------------------------------------------------------


class LastBackup(Struct):
    """The machine's latest job (all null if it has none)."""

    backup_id: str | None
    type: str | None
    job_type: str | None
    status: str | None
    created_at: datetime | None
    completed_at: datetime | None
    bytes_transferred: int | None
    total_bytes: int | None


class MachineInfo(Struct):
    cpu_count: int | None
    memory_mb: int | None
    os_type: str | None
    disk_count: int | None
    protection_flow: str | None


class RpoStatus(Struct):
    """The objective (the machine's own or the default), the age of the last successful backup, and
    whether that is too old (never backed up counts as out); `overdue_ratio` = age ÷ objective."""

    rpo_seconds: int
    rpo_source: Literal["machine", "default"]
    last_success_at: datetime | None
    age_seconds: int | None
    out_of_rpo: bool
    overdue_ratio: float | None


class FailureRisk(Struct):
    """How likely the machine's next backup fails or overruns (2× its usual duration), from its last 10
    finished backup runs and its RPO margin (pipeline/insight/risk.py): `score` 0-1, `level` low (below
    0.05), medium, high (from 0.115), and the `reasons`, the weightiest first. Measured against simulated
    histories with planted degradation in bench/risk.py."""

    score: Annotated[float, Meta(ge=0, le=1)]
    level: Literal["low", "medium", "high"]
    reasons: list[str]


class MachineFlow(Struct):
    """A row of the protection-flows table."""

    vm_name: str
    repository_id: str | None
    total_backups: int
    successful: int
    failed: int
    cancelled: int
    running: int
    success_rate: float | None
    total_protected_bytes: int
    last_backup: LastBackup
    machine: MachineInfo
    rpo: RpoStatus
    risk: FailureRisk


class MachineList(Struct):
    machines: list[MachineFlow]
    total: int


class MachineKpis(Struct):
    total_backups: int
    successful: int
    failed: int
    cancelled: int
    running: int
    success_rate: float | None
    last_backup_at: datetime | None
    total_protected_bytes: int
    average_size_bytes: int | None
    average_duration_seconds: float | None


class TrendPoint(Struct):
    """One job in the machine's trend series, oldest first."""

    backup_id: str
    created_at: datetime
    type: str
    job_type: str
    status: str
    size_bytes: int
    total_bytes: int
    duration_seconds: float | None
    avg_speed_bps: int | None
    anomalies: list[AnomalyFlag]


class FlaggedRun(AnomalyFlag):
    """An unusual figure of one of the machine's runs (the Analytics tab's list, newest first)."""

    backup_id: str
    created_at: datetime
    type: str


class MachineDetails(Struct):
    vm_name: str
    repository_id: str | None
    machine: MachineInfo
    rpo: RpoStatus
    risk: FailureRisk
    kpis: MachineKpis
    last_backup: LastBackup
    trend: list[TrendPoint]
    anomalies: list[FlaggedRun]
    backups: list[BackupJob]
    week_over_week: WeekOverWeek
    """The last 7 days against the 7 before: jobs, success rate, average duration, size and speed."""


class RpoBody(Struct, forbid_unknown_fields=True):
    """A machine's own recovery-point objective in seconds (1 minute to 1 year), or null for the default."""

    rpo_seconds: Annotated[int, Meta(ge=60, le=366 * 86_400)] | None


class RpoUpdated(Struct):
    vm_name: str
    rpo: RpoStatus | None


class RegisterMachine(MachineSpec, kw_only=True, forbid_unknown_fields=True):
    """A machine to protect: the details given are set, those left out kept (a machine known from its jobs
    keeps what they said); `rpo_seconds` sets its own objective (1 minute to 1 year), null returns it to the
    default, left out keeps it."""

    repository_id: Name | None = None
    rpo_seconds: Annotated[int, Meta(ge=60, le=366 * 86_400)] | None | UnsetType = UNSET


class RegisteredMachine(Struct):
    """A registered machine: what is known of it, its RPO status, and since when it is known (the
    never_backed_up rule fires when no job has completed within its RPO of that)."""

    vm_name: str
    repository_id: str | None
    machine: MachineInfo
    rpo: RpoStatus
    registered_at: datetime
    total_backups: int


# --- health ------------------------------------------------------------------------------------


class Liveness(Struct):
    status: Literal["ok"]


class StoreCheck(Struct):
    ok: bool
    error: str | UnsetType = UNSET


class FailedRollup(Struct):
    job_id: str
    attempts: int
    last_error: str


class RollupCheck(Struct):
    """The scheduler's backlog (informational: it does not make the process unready)."""

    ok: bool
    waiting: int
    failed: int
    purge_backlog: int
    recently_failed: list[FailedRollup]


class GroupCommitCheck(Struct):
    """This process's group commits; the p99s are over the last 1,000 commits (null before any)."""

    ok: bool
    queued: int
    inflight: int
    commits: int
    updates: int
    points_written: int
    failed_commits: int
    p99_ms: float | None
    influx_p99_ms: float | None
    mysql_p99_ms: float | None
    error: str | None
    failing_since: float | None


class ReconcileRun(Struct):
    mode: Literal["changed", "all"]
    finished_at: datetime
    machines_checked: int
    machines_corrected: int


class SummaryCheck(Struct):
    """Drift of the per-machine summaries (informational): jobs changed outside the job store since the last
    reconcile (counted up to 10,000), and that run's corrections (`sendense reconcile`)."""

    ok: bool
    jobs_changed_outside: int
    last_run: ReconcileRun | None


class ReadinessChecks(Struct):
    mysql: StoreCheck
    influxdb: StoreCheck
    group_commit: GroupCommitCheck
    rollup: RollupCheck | UnsetType = UNSET
    """Left out when MySQL does not answer."""
    summary: SummaryCheck | UnsetType = UNSET
    """Left out when MySQL does not answer."""


class Readiness(Struct):
    status: Literal["ready", "unavailable"]
    checks: ReadinessChecks


CONTRACT_TYPES: tuple[Any, ...] = (
    Error,
    UpdateAccepted,
    UpdateFinished,
    BatchResult,
    History,
    DiskHistory,
    BackupJob,
    BackupList,
    MachineList,
    MachineDetails,
    RpoUpdated,
    Liveness,
    Readiness,
    TelemetryUpdate,
    BatchBody,
    CreateBackup,
    RpoBody,
    RegisteredMachine,
    RegisterMachine,
    *ALERT_CONTRACT_TYPES,
    *REPORT_CONTRACT_TYPES,
)
"""Every body of the contract: their component schemas in the OpenAPI document are msgspec's own."""


def to_body(value: Any, body_type: Any) -> Any:
    """A service's answer (plain data) as its response Struct; a mismatch is a bug, raised here."""
    return msgspec.convert(value, body_type, from_attributes=True)
