"""The estate per hour of job creation: computed from backup_jobs for a range, and merged over a period.

`hour_figures(conn, start, end)` aggregates the jobs created in [start, end), by UTC hour: counts by status,
bytes, durations, speeds, unusual runs, and each hour's 10 largest and 10 slowest completed jobs (a
period's top 10 is the top 10 of its hours' top 10s, so it stays exact). It reads one range of
`ix_backup_jobs_created_at`. `merge` (pure) adds hours up.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, text

from pipeline.jobs.vocabulary import COMPLETED

__all__ = ["TOP", "HourFigures", "floor_hour", "hour_figures", "merge"]

TOP = 10
_HOUR = "DATE_FORMAT(created_at, '%Y-%m-%d %H:00:00')"
_DURATION = "TIMESTAMPDIFF(SECOND, COALESCE(started_at, created_at), completed_at)"
_AGGREGATE = text(
    f"SELECT {_HOUR} AS hour, COUNT(*) AS jobs, SUM(status = :completed) AS completed, "
    "SUM(status = 'failed') AS failed, SUM(status = 'cancelled') AS cancelled, "
    "SUM(status IN ('pending', 'running')) AS active, "
    "SUM(CASE WHEN status = :completed THEN bytes_transferred ELSE 0 END) AS bytes_completed, "
    f"SUM(CASE WHEN status = :completed THEN {_DURATION} ELSE 0 END) AS duration_completed, "
    "SUM(CASE WHEN status = :completed THEN avg_speed_bps ELSE 0 END) AS speed_completed, "
    "SUM(status = :completed AND avg_speed_bps IS NOT NULL) AS speed_jobs, "
    "SUM(COALESCE(anomaly_count, 0) > 0) AS unusual "
    "FROM backup_jobs WHERE created_at >= :start AND created_at < :end GROUP BY hour"
).bindparams(completed=COMPLETED)
_TOP = (
    f"SELECT hour, id, value FROM (SELECT {_HOUR} AS hour, id, {{value}} AS value, ROW_NUMBER() OVER "
    f"(PARTITION BY {_HOUR} ORDER BY {{value}} DESC, id) AS n FROM backup_jobs "
    "WHERE created_at >= :start AND created_at < :end AND status = :completed) AS ranked WHERE n <= :top"
)
_LARGEST = text(_TOP.format(value="bytes_transferred")).bindparams(completed=COMPLETED)
_SLOWEST = text(_TOP.format(value=_DURATION)).bindparams(completed=COMPLETED)


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass
class HourFigures:
    """One hour's (or, merged, a period's) figures of the jobs created in it."""

    jobs: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    active: int = 0
    bytes_completed: int = 0
    duration_completed: int = 0
    speed_completed: int = 0
    speed_jobs: int = 0
    unusual: int = 0
    largest: list[list] = field(default_factory=list)
    """[[bytes, job id], ...], largest first, at most TOP."""
    slowest: list[list] = field(default_factory=list)
    """[[seconds, job id], ...], slowest first, at most TOP."""

    COUNTS = ("jobs", "completed", "failed", "cancelled", "active", "bytes_completed", "duration_completed",
              "speed_completed", "speed_jobs", "unusual")  # fmt: skip


def _top(lists: Iterable[list[list]]) -> list[list]:
    return heapq.nlargest(TOP, (entry for entries in lists for entry in entries), key=lambda e: (e[0], e[1]))


def merge(hours: Iterable[HourFigures]) -> HourFigures:
    """The sum of some hours (pure): counts added, top lists merged."""
    total = HourFigures()
    largest, slowest = [], []
    for h in hours:
        for name in HourFigures.COUNTS:
            setattr(total, name, getattr(total, name) + getattr(h, name))
        largest.append(h.largest)
        slowest.append(h.slowest)
    total.largest, total.slowest = _top(largest), _top(slowest)
    return total


def hour_figures(conn: Connection, start: datetime, end: datetime) -> dict[datetime, HourFigures]:
    """The figures of each UTC hour of the jobs created in [start, end) (an hour cut by the range counts only
    its part)."""
    bounds = {"start": start, "end": end}
    found: dict[datetime, HourFigures] = {}
    for r in conn.execute(_AGGREGATE, bounds):
        hour = datetime.strptime(r.hour, "%Y-%m-%d %H:%M:%S")
        found[hour] = HourFigures(*(int(getattr(r, name) or 0) for name in HourFigures.COUNTS))
    for query, attribute in ((_LARGEST, "largest"), (_SLOWEST, "slowest")):
        for r in conn.execute(query, {**bounds, "top": TOP}):
            hour = datetime.strptime(r.hour, "%Y-%m-%d %H:%M:%S")
            if hour in found:
                getattr(found[hour], attribute).append([int(r.value or 0), r.id])
    for figures in found.values():
        figures.largest.sort(key=lambda e: (e[0], e[1]), reverse=True)
        figures.slowest.sort(key=lambda e: (e[0], e[1]), reverse=True)
    return found
