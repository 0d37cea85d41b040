"""The report API's answers as msgspec Structs: the estate summary, week-over-week, the grid, the timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from msgspec import UNSET, Struct, UnsetType

from pipeline.jobs.vocabulary import BackupType, JobStatus, JobType

__all__ = [
    "REPORT_CONTRACT_TYPES",
    "EstateReport",
    "GridPage",
    "Timeline",
    "WeekOverWeek",
]


class ReportPeriod(Struct):
    start: datetime
    end: datetime
    label: str


class EstateTotals(Struct):
    """Jobs created in the period, by status; success rate = completed ÷ (completed + failed)."""

    jobs: int
    completed: int
    failed: int
    cancelled: int
    running: int
    success_rate: float | None
    bytes_protected: int
    """Bytes of the completed jobs."""
    machines: int
    unusual_runs: int
    """Rolled-up runs carrying anomaly flags."""


class FailureReason(Struct):
    reason: str
    jobs: int
    latest_at: datetime


class ReportJob(Struct):
    backup_id: str
    vm_name: str
    repository_id: str
    type: BackupType
    job_type: JobType
    status: JobStatus
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    bytes_transferred: int
    duration_seconds: float | None = None
    error_message: str | None = None
    anomalies: list[dict[str, Any]] = []


class OverdueMachine(Struct):
    vm_name: str
    last_success_at: datetime | None
    rpo_seconds: int
    overdue_ratio: float | None
    """Age of the last success ÷ objective; null: never backed up."""


class OutOfRpo(Struct):
    machines: int
    worst: list[OverdueMachine]


class BusiestHour(Struct):
    """The hour of the day (display time zone) in which most jobs started, and every hour's count."""

    hour: int
    jobs: int
    label: str
    by_hour: list[int]


class FigureChange(Struct):
    now: float | None
    before: float | None
    change_percent: float | None | UnsetType = UNSET
    """The change in percent of `before` (null: nothing before to compare with); every figure but the success rate."""
    change_points: float | None | UnsetType = UNSET
    """The success rate's change, in percentage points."""


class WeekOverWeek(Struct):
    """This period against the one of the same length just before it: each figure, its change, and a
    sentence for each change of 25 % (or 25 points) or more."""

    figures: dict[str, FigureChange]
    sentences: list[str]


class EstateReport(Struct):
    period: ReportPeriod
    time_zone: str
    totals: EstateTotals
    failure_reasons: list[FailureReason]
    failures: list[ReportJob]
    out_of_rpo: OutOfRpo
    unusual_runs: list[ReportJob]
    slowest: list[ReportJob]
    largest: list[ReportJob]
    busiest_hour: BusiestHour | None
    week_over_week: WeekOverWeek
    generated_at: datetime


class GridMachine(Struct):
    vm_name: str
    cells: list[Literal["success", "warning", "failed", "running", "none"]]
    """One per day of `days`: the outcome of that day's jobs."""


class GridPage(Struct):
    days: list[str]
    """Calendar days of the display time zone, oldest first (ISO dates)."""
    time_zone: str
    total: int
    machines: list[GridMachine]


class TimelineBar(Struct):
    backup_id: str
    vm_name: str
    repository_id: str
    type: BackupType
    job_type: JobType
    status: JobStatus
    start: datetime
    end: datetime
    avg_speed_bps: int


class TimelineBucket(Struct):
    start: datetime
    running: int
    speed_bps: int
    """The summed average speed of the jobs running in the bucket."""


class Timeline(Struct):
    start: datetime
    end: datetime
    bars: list[TimelineBar]
    bars_left_out: int
    """Bars beyond 20,000 (the shortest are left out; the series still count them)."""
    buckets: list[TimelineBucket]


REPORT_CONTRACT_TYPES: tuple[Any, ...] = (EstateReport, GridPage, Timeline, WeekOverWeek)
