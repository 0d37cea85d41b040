"""What a report document reads: the estate summary with its hours and riskiest machines, or one machine's period.

Every read is bounded whatever the estate's size: the estate's figures come from `estate_hours` (a few
hundred rows for a month), its lists are top-N index ranges (pipeline/reports/estate.py), and one machine's
jobs are a range of `(vm_name, created_at)` cut at `MACHINE_JOBS` rows; counts say what was left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text

from pipeline.clock import aware
from pipeline.read.jobs import duration_seconds
from pipeline.read.machines import MachineQuery, get_machine, list_machines
from pipeline.reports.document import EstateDocument, MachineDocument, estate_document, machine_document
from pipeline.reports.estate import LISTED, estate_figures, estate_summary_and_hours, machine_week_over_week
from pipeline.reports.hours import HourFigures
from pipeline.reports.periods import Period

__all__ = [
    "MACHINE_JOBS",
    "EstateInputs",
    "MachineInputs",
    "estate_inputs",
    "machine_inputs",
    "read_estate_document",
    "read_machine_document",
]

MACHINE_JOBS = 500
"""Most jobs of one machine a document reads for its charts (its table shows fewer; the rest are counted)."""

_MACHINE_JOBS = text(
    "SELECT id, backup_type, job_type, status, created_at, started_at, completed_at, last_telemetry_at, "
    "last_seen_at, bytes_transferred, total_bytes, avg_speed_bps, error_message FROM backup_jobs "
    "WHERE vm_name = :vm AND created_at >= :start AND created_at < :end ORDER BY created_at DESC, id DESC "
    "LIMIT :limit"
)
_MACHINE_FAILURES = text(
    "SELECT COALESCE(error_message, '') AS reason, COUNT(*) AS n, MAX(created_at) AS latest FROM backup_jobs "
    "WHERE vm_name = :vm AND created_at >= :start AND created_at < :end AND status = 'failed' "
    "GROUP BY COALESCE(error_message, '') ORDER BY n DESC, latest DESC LIMIT :limit"
)


@dataclass(frozen=True)
class EstateInputs:
    """The estate summary (the JSON report's answer), its UTC hours, and the riskiest machines now."""

    summary: dict
    hours: dict[datetime, HourFigures]
    riskiest: list[dict]


@dataclass(frozen=True)
class MachineInputs:
    """One machine now (details, RPO, risk) and its period: totals, newest jobs first, failure reasons."""

    machine: dict
    totals: dict
    jobs: list[dict]
    """Newest first, at most MACHINE_JOBS."""
    reasons: list[dict]
    week_over_week: dict


def estate_inputs(engine: Engine, period: Period, zone: ZoneInfo, rpo_default: int, now: datetime) -> EstateInputs:
    summary, hours = estate_summary_and_hours(engine, period, zone, rpo_default, now)
    risky = list_machines(engine, MachineQuery(limit=LISTED, sort="risk", descending=True), rpo_default)
    return EstateInputs(summary, hours, risky["machines"])


def machine_inputs(
    engine: Engine, vm_name: str, period: Period, rpo_default: int, now: datetime
) -> MachineInputs | None:
    """None: no machine of that name with jobs (the API's 404)."""
    machine = get_machine(engine, vm_name, rpo_default)
    if machine is None:
        return None
    bounds = {"vm": vm_name, "start": period.start, "end": period.end}
    with engine.connect() as conn:
        totals, _ = estate_figures(conn, period, vm_name)
        rows = conn.execute(_MACHINE_JOBS, {**bounds, "limit": MACHINE_JOBS}).all()
        reasons = [
            {"reason": r.reason or "(no reason given)", "jobs": int(r.n), "latest_at": aware(r.latest)}
            for r in conn.execute(_MACHINE_FAILURES, {**bounds, "limit": LISTED})
        ]
        week = machine_week_over_week(conn, vm_name, period)
    jobs = [
        {
            "backup_id": r.id,
            "type": r.backup_type,
            "job_type": r.job_type,
            "status": r.status,
            "created_at": aware(r.created_at),
            "completed_at": aware(r.completed_at),
            "duration_seconds": duration_seconds(r, now),
            "bytes_transferred": int(r.bytes_transferred or 0),
            "avg_speed_bps": r.avg_speed_bps,
            "error_message": r.error_message,
        }
        for r in rows
    ]
    return MachineInputs(machine, totals, jobs, reasons, week)


def read_estate_document(
    engine: Engine, period: Period, zone: ZoneInfo, rpo_default: int, now: datetime
) -> EstateDocument:
    """The estate document of `period`: read, then shaped (pipeline/reports/document.py)."""
    got = estate_inputs(engine, period, zone, rpo_default, now)
    return estate_document(got.summary, got.hours, got.riskiest, period, zone, now)


def read_machine_document(
    engine: Engine, vm_name: str, period: Period, zone: ZoneInfo, rpo_default: int, now: datetime
) -> MachineDocument | None:
    """One machine's document of `period` (None: no such machine)."""
    got = machine_inputs(engine, vm_name, period, rpo_default, now)
    if got is None:
        return None
    return machine_document(got.machine, got.totals, got.jobs, got.reasons, got.week_over_week, period, zone, now)
