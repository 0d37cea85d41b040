"""The VM × day grid: machines as rows, the last days of the display time zone as columns, one outcome a cell.

A cell is the outcome of the jobs created that day: `failed` when the day's last finished job failed,
`warning` when it completed after a failure that day, `success` when every finished job completed,
`running` when a job is still under way and none finished, `none` without a job. A page of machines is
read like the flows table (by name, searched); its jobs are one range of `ix_backup_jobs_vm_name_created_at`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, bindparam, text

from pipeline.reports.periods import day_bounds, days_back, local_day

__all__ = ["OUTCOMES", "day_outcome", "machine_grid", "machine_grid_rows", "outcome_counts"]

OUTCOMES = ("success", "warning", "failed", "running", "none")

_NAMES = text(
    "SELECT vm_name FROM machines WHERE (:pattern IS NULL OR vm_name LIKE :pattern OR repository_id LIKE :pattern) "
    "ORDER BY vm_name LIMIT :limit OFFSET :offset"
)
_COUNT = text(
    "SELECT COUNT(*) FROM machines WHERE (:pattern IS NULL OR vm_name LIKE :pattern OR repository_id LIKE :pattern)"
)
_JOBS = text(
    "SELECT vm_name, status, created_at, completed_at FROM backup_jobs WHERE vm_name IN :names "
    "AND created_at >= :start AND created_at < :end ORDER BY vm_name, created_at, id"
).bindparams(bindparam("names", expanding=True))


def day_outcome(statuses: Sequence[tuple[datetime, str]]) -> str:
    """One day's outcome from its jobs' (end or creation time, status), in any order. Pure."""
    finished = sorted((at, s) for at, s in statuses if s in ("completed", "failed"))
    if not finished:
        return "running" if any(s in ("pending", "running") for _, s in statuses) else "none"
    if finished[-1][1] == "failed":
        return "failed"
    return "warning" if any(s == "failed" for _, s in finished) else "success"


def _pattern(search: str | None) -> str | None:
    if not search:
        return None
    return "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def machine_grid(
    engine: Engine, zone: ZoneInfo, now: datetime, *, days: int = 30, limit: int = 100, offset: int = 0,
    search: str | None = None,
) -> dict:  # fmt: skip
    """A page of the grid: `days` columns ending today (display zone), `limit` machines from `offset`."""
    columns: list[date] = days_back(days, now, zone)
    start, end = day_bounds(columns[0], zone)[0], day_bounds(columns[-1], zone)[1]
    pattern = _pattern(search)
    with engine.connect() as conn:
        total = conn.execute(_COUNT, {"pattern": pattern}).scalar_one()
        names = list(conn.execute(_NAMES, {"pattern": pattern, "limit": limit, "offset": offset}).scalars())
        rows = conn.execute(_JOBS, {"names": names, "start": start, "end": end}).all() if names else []
    cells: dict[tuple[str, date], list[tuple[datetime, str]]] = {}
    for r in rows:
        cells.setdefault((r.vm_name, local_day(r.created_at, zone)), []).append(
            (r.completed_at or r.created_at, r.status)
        )
    return {
        "days": [d.isoformat() for d in columns],
        "time_zone": zone.key,
        "total": int(total),
        "machines": [{"vm_name": vm, "cells": [day_outcome(cells.get((vm, d), ())) for d in columns]} for vm in names],
    }


def outcome_counts(rows: Iterable[dict]) -> dict[str, int]:
    """How many cells of each outcome (for a legend and the tests)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for machine in rows:
        for cell in machine["cells"]:
            counts[cell] += 1
    return counts


def machine_grid_rows(
    engine: Engine, zone: ZoneInfo, now: datetime, *, days: int = 30, search: str | None = None, page: int = 500
) -> tuple[list[str], Iterable[list[str]]]:
    """The header and, lazily, every machine's row of the grid (read `page` machines at a time): for CSV."""
    columns = days_back(days, now, zone)

    def rows() -> Iterable[list[str]]:
        offset = 0
        while True:
            chunk = machine_grid(engine, zone, now, days=days, limit=page, offset=offset, search=search)
            for machine in chunk["machines"]:
                yield [machine["vm_name"], *machine["cells"]]
            if len(chunk["machines"]) < page:
                return
            offset += page

    return ["vm_name", *(d.isoformat() for d in columns)], rows()
