"""What a VM's past runs of one backup type say about the next: speed, and time spent after the transfer."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from pipeline.insight.anomaly import HISTORY, RunFigures
from pipeline.jobs.vocabulary import COMPLETED

__all__ = ["Baseline", "RunBaselines", "previous_runs"]

RUNS = 10
"""Past completed and rolled-up runs looked at."""
_TTL = 60.0
# avg_speed_bps is a column (copied out by the rollup); the finalizing time and the duration are read
# out of performance_metrics by the database, so a handful of numbers cross the wire, not the charts.
_RUNS_SQL = text(
    "SELECT avg_speed_bps, JSON_EXTRACT(performance_metrics, '$.phase_durations.finalizing') AS tail, "
    "JSON_EXTRACT(performance_metrics, '$.duration_seconds') AS duration FROM backup_jobs "
    "WHERE vm_name = :vm AND backup_type = :type AND status = :completed AND rolled_up_at IS NOT NULL "
    "ORDER BY created_at DESC LIMIT :runs"
).bindparams(completed=COMPLETED)


@dataclass(frozen=True, slots=True)
class Baseline:
    """Mean speed of the past runs (bytes over their whole duration) and the mean share of their
    duration spent finalizing; None/0 without history."""

    avg_speed_bps: float | None = None
    tail_share: float = 0.0
    runs: int = 0


class RunBaselines:
    """Baselines per (VM, backup type), cached for a minute (they change once a job is rolled up)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cache: dict[tuple[str, str], tuple[float, Baseline]] = {}

    def cached(self, vm_name: str, backup_type: str) -> Baseline | None:
        """The baseline if it is cached and fresh: no query, so no worker thread needed to ask."""
        hit = self._cache.get((vm_name, backup_type))
        return hit[1] if hit is not None and time.monotonic() - hit[0] < _TTL else None

    def get(self, vm_name: str, backup_type: str) -> Baseline:
        key = (vm_name, backup_type)
        hit = self.cached(vm_name, backup_type)
        if hit is not None:
            return hit
        with self.engine.connect() as conn:
            rows = conn.execute(_RUNS_SQL, {"vm": vm_name, "type": backup_type, "runs": RUNS}).all()
        baseline = summarise(rows)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic(), baseline)
        return baseline


def summarise(rows) -> Baseline:
    """(avg_speed_bps, finalizing seconds, duration seconds) rows -> their Baseline."""
    speeds = [float(r[0]) for r in rows if r[0]]
    shares = [float(r[1] or 0) / float(r[2]) for r in rows if r[2] and float(r[2]) > 0]
    return Baseline(
        avg_speed_bps=statistics.mean(speeds) if speeds else None,
        tail_share=statistics.mean(shares) if shares else 0.0,
        runs=len(rows),
    )


_PREVIOUS_SQL = text(
    "SELECT JSON_EXTRACT(performance_metrics, '$.duration_seconds') AS duration, bytes_transferred, "
    "avg_speed_bps FROM backup_jobs WHERE vm_name = :vm AND backup_type = :type AND status = :completed "
    "AND rolled_up_at IS NOT NULL AND id <> :job AND created_at < :before ORDER BY created_at DESC LIMIT :runs"
).bindparams(completed=COMPLETED)


def previous_runs(conn: Connection, vm_name: str, backup_type: str, job_id: str, before) -> list[RunFigures]:
    """The figures of the VM's completed, rolled-up runs of this backup type created before `before`,
    most recent first (what a finished run is compared with)."""
    rows = conn.execute(
        _PREVIOUS_SQL, {"vm": vm_name, "type": backup_type, "job": job_id, "before": before, "runs": HISTORY}
    ).all()
    return [
        RunFigures(float(r.duration), float(r.bytes_transferred or 0), float(r.avg_speed_bps or 0))
        for r in rows
        if r.duration is not None
    ]
