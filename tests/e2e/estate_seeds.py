"""Jobs at chosen times for the estate page's browser tests, imported through the project's history importer.

The API stamps a job's creation with the moment it is posted; the timeline and the grid need jobs on
days and hours of the past, so they come in as imported history (`HistoryImporter`: validated rows,
then the machines' summaries reconciled), as an operator's old job sheet would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.jobs.store import JobStore
from pipeline.reconcile.importer import HistoryImporter
from pipeline.reconcile.store import SummaryReconciler

__all__ = ["GIB", "MIB", "SeededEstate", "seed_estate"]

MIB = 1024**2
GIB = 1024**3


@dataclass
class SeededEstate:
    """Two machines of one repository: `busy` has jobs on past days (one of each grid outcome) and this week and
    the week before (week-over-week); `other` one failed job. `timeline` are the jobs of the last 24 hours."""

    prefix: str
    repository: str
    busy: str
    other: str
    rows: list[dict]
    timeline: list[dict]
    today: datetime  # midnight UTC (the test stack's display zone), naive

    def day(self, days_ago: int) -> str:
        return (self.today - timedelta(days=days_ago)).date().isoformat()


def _job(job_id: str, vm: str, repo: str, status: str, start: datetime, minutes: float, size: int) -> dict:
    end = start + timedelta(minutes=minutes)
    return {
        "id": job_id, "vm_name": vm, "repository_id": repo, "backup_type": "incremental", "status": status,
        "created_at": start.isoformat(), "started_at": start.isoformat(), "completed_at": end.isoformat(),
        "bytes_transferred": size, "total_bytes": size, "progress_percent": 100,
        "error_message": "NBD server reset the connection" if status == "failed" else None,
    }  # fmt: skip


def seed_estate(engine, settings) -> SeededEstate:
    prefix = f"est-{int(time.time() * 1000) % 10**9}"
    repo, busy, other = f"repo-{prefix}", f"{prefix}-busy", f"{prefix}-other"
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    today = now.replace(hour=0, minute=0, second=0)

    def at(days_ago: int, hour: int) -> datetime:
        return today - timedelta(days=days_ago) + timedelta(hours=hour)

    rows = [
        # The grid: 2 days ago success, 3 days ago a failure then a success (warning), 4 days ago failed.
        _job(f"{prefix}-d2", busy, repo, "completed", at(2, 1), 30, 2 * GIB),
        _job(f"{prefix}-d3a", busy, repo, "failed", at(3, 1), 10, 100 * MIB),
        _job(f"{prefix}-d3b", busy, repo, "completed", at(3, 4), 30, 2 * GIB),
        _job(f"{prefix}-d4", busy, repo, "failed", at(4, 1), 10, 100 * MIB),
        # The week before: two small, quick jobs (week-over-week: this week moves far more data).
        _job(f"{prefix}-w1", busy, repo, "completed", at(9, 1), 10, 512 * MIB),
        _job(f"{prefix}-w2", busy, repo, "completed", at(10, 1), 10, 512 * MIB),
    ]
    timeline = [
        _job(f"{prefix}-t1", busy, repo, "completed", now - timedelta(hours=6), 75, 3 * GIB),
        _job(f"{prefix}-t2", other, repo, "failed", now - timedelta(hours=5, minutes=30), 20, 200 * MIB),
        _job(f"{prefix}-t3", busy, repo, "completed", now - timedelta(hours=2), 45, GIB),
    ]
    store = JobStore(engine)
    importer = HistoryImporter(engine, store, SummaryReconciler(engine, store), settings.scheduler.chart_max_points)
    report = importer.run(rows + timeline)
    assert report.imported == len(rows) + len(timeline) and report.rejected == 0, report.as_dict()
    return SeededEstate(prefix, repo, busy, other, rows, timeline, today)
