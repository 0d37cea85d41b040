"""The words of reconciliation: a machine's summary, a correction to it, and a run's report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal

__all__ = ["KEPT_CORRECTIONS", "SUMMARY_FIELDS", "Correction", "MachineSummary", "ReconcileMode", "ReconcileReport"]

ReconcileMode = Literal["changed", "all"]
"""`changed`: the machines with jobs marked as changed outside the job store since the last run;
`all`: every machine that has a row or a job (also finds jobs deleted or moved to another VM)."""

SUMMARY_FIELDS = (
    "total_jobs",
    "successful",
    "failed",
    "cancelled",
    "protected_bytes",
    "last_job_id",
    "last_job_at",
    "last_success_at",
)
"""The columns of `machines` that are derived from `backup_jobs` (the rest are details and the RPO)."""

KEPT_CORRECTIONS = 100
"""Corrections listed in a report (all are counted)."""


@dataclass(frozen=True, slots=True)
class MachineSummary:
    """What `machines` says of one machine's jobs; all zero / None for a machine without jobs."""

    total_jobs: int = 0
    successful: int = 0
    failed: int = 0
    cancelled: int = 0
    protected_bytes: int = 0
    last_job_id: str | None = None
    last_job_at: datetime | None = None
    last_success_at: datetime | None = None

    def values(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Correction:
    """One field of one machine's summary that did not match its jobs."""

    vm_name: str
    field: str
    stored: object
    computed: object

    def as_dict(self) -> dict:
        def text(value: object) -> object:
            return value.isoformat() if isinstance(value, datetime) else value

        return {
            "vm_name": self.vm_name,
            "field": self.field,
            "stored": text(self.stored),
            "computed": text(self.computed),
        }


@dataclass
class ReconcileReport:
    """What one run checked and corrected (`dry_run`: found, nothing written)."""

    mode: ReconcileMode
    started_at: datetime
    dry_run: bool = False
    finished_at: datetime | None = None
    machines_checked: int = 0
    machines_corrected: int = 0
    machines_created: int = 0
    corrections_total: int = 0
    corrections: list[Correction] = field(default_factory=list)
    since: datetime | None = None
    """`changed` runs: jobs marked after this were looked at (None: every marked job)."""
    risk_reassessed: int = 0
    """Machines whose failure risk (pipeline/insight/risk.py) the run wrote anew (not counted as corrections)."""

    def add(self, corrections: list[Correction], checked: int, created: int) -> None:
        self.machines_checked += checked
        self.machines_created += created
        self.machines_corrected += len({c.vm_name for c in corrections})
        self.corrections_total += len(corrections)
        room = KEPT_CORRECTIONS - len(self.corrections)
        if room > 0:
            self.corrections.extend(corrections[:room])

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "since": self.since.isoformat() if self.since else None,
            "machines_checked": self.machines_checked,
            "machines_corrected": self.machines_corrected,
            "machines_created": self.machines_created,
            "corrections_total": self.corrections_total,
            "risk_reassessed": self.risk_reassessed,
            "corrections": [c.as_dict() for c in self.corrections],
        }
