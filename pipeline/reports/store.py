"""EstateHoursStore: keeps `estate_hours` (the estate per hour of job creation) current; owns that table.

The scheduler's refresh recomputes, from backup_jobs, every hour whose jobs changed since the last
refresh: created, ended or rolled up (server-clock columns, indexed) or changed outside the pipeline
(the reconcile's marks). One refresher at a time (the state row is claimed with FOR UPDATE SKIP
LOCKED); recomputing an hour is idempotent, so a crash or an overlap costs only time.

A report reads the stored hours inside its period, and computes on the spot the hours changed since the
last refresh and the two hours its bounds cut: it is exact at the moment it is read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, select, text
from sqlalchemy.dialects.mysql import insert as mysql_insert

from pipeline.db.tables import estate_hours, estate_hours_state
from pipeline.reports.hours import HourFigures, floor_hour, hour_figures, merge

__all__ = ["EstateHoursStore", "RefreshRun"]

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
# A change committed just before the previous refresh's start may have been invisible to it.
_OVERLAP = timedelta(minutes=2)
# The first refresh (no watermark) computes every hour, this many days of them per statement.
_CHUNK = timedelta(days=7)
_TOUCHED = text(
    "SELECT DISTINCT DATE_FORMAT(created_at, '%Y-%m-%d %H:00:00') AS hour FROM backup_jobs "
    "WHERE created_at >= :since "
    "UNION SELECT DISTINCT DATE_FORMAT(created_at, '%Y-%m-%d %H:00:00') FROM backup_jobs WHERE ended_seen_at > :since "
    "UNION SELECT DISTINCT DATE_FORMAT(created_at, '%Y-%m-%d %H:00:00') FROM backup_jobs "
    "WHERE status = 'completed' AND rolled_up_at > :since "
    "UNION SELECT DISTINCT DATE_FORMAT(created_at, '%Y-%m-%d %H:00:00') FROM backup_jobs "
    "WHERE external_change_at > :since"
)
_NOW = text("SELECT UTC_TIMESTAMP(6)")


@dataclass
class RefreshRun:
    claimed: bool = False
    hours: int = 0


def _row(hour: datetime, f: HourFigures, now: datetime) -> dict:
    return {"hour": hour, **{n: getattr(f, n) for n in HourFigures.COUNTS}, "largest": f.largest,
            "slowest": f.slowest, "computed_at": now}  # fmt: skip


def _stored(row) -> HourFigures:
    return HourFigures(*(int(getattr(row, n)) for n in HourFigures.COUNTS), largest=list(row.largest),
                       slowest=list(row.slowest))  # fmt: skip


class EstateHoursStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- the refresh (scheduler) ------------------------------------------------------------------

    def refresh(self) -> RefreshRun:
        """Recompute the hours changed since the last refresh (all of them the first time)."""
        run = RefreshRun()
        with self.engine.connect() as conn, conn.begin():
            state = conn.execute(
                select(estate_hours_state.c.watermark)
                .where(estate_hours_state.c.id == 1)
                .with_for_update(skip_locked=True)
            ).first()
            if state is None:
                return run
            run.claimed = True
            now = conn.execute(_NOW).scalar_one()
            if state.watermark is None:
                run.hours = self._all(conn, now)
            else:
                hours = self._touched(conn, state.watermark - _OVERLAP)
                for hour in sorted(hours):
                    self._write(conn, hour, hour_figures(conn, hour, hour + HOUR).get(hour), now)
                run.hours = len(hours)
            conn.execute(estate_hours_state.update().where(estate_hours_state.c.id == 1).values(watermark=now))
        return run

    def _all(self, conn: Connection, now: datetime) -> int:
        first = conn.execute(text("SELECT MIN(created_at) FROM backup_jobs")).scalar()
        if first is None:
            return 0
        conn.execute(delete(estate_hours))
        start, count = floor_hour(first), 0
        while start <= now:
            end = start + _CHUNK
            for hour, figures in hour_figures(conn, start, end).items():
                self._write(conn, hour, figures, now)
                count += 1
            start = end
        return count

    @staticmethod
    def _touched(conn: Connection, since: datetime) -> set[datetime]:
        return {datetime.strptime(r.hour, "%Y-%m-%d %H:%M:%S") for r in conn.execute(_TOUCHED, {"since": since})}

    @staticmethod
    def _write(conn: Connection, hour: datetime, figures: HourFigures | None, now: datetime) -> None:
        if figures is None:  # no job left in that hour
            conn.execute(delete(estate_hours).where(estate_hours.c.hour == hour))
            return
        stmt = mysql_insert(estate_hours).values(_row(hour, figures, now))
        conn.execute(
            stmt.on_duplicate_key_update({k: stmt.inserted[k] for k in _row(hour, figures, now) if k != "hour"})
        )

    # --- reading a period (reports) --------------------------------------------------------------

    def period_figures(self, conn: Connection, start: datetime, end: datetime) -> HourFigures:
        """The figures of the jobs created in [start, end), exact now (see `hours`)."""
        return merge(self.hours(conn, start, end).values())

    def hours(self, conn: Connection, start: datetime, end: datetime) -> dict[datetime, HourFigures]:
        """Each UTC hour of [start, end), exact now: the stored hours, with the hours changed since the last
        refresh and the two hours the bounds cut computed on the spot."""
        first_full, last_full = (
            floor_hour(start) + (HOUR if floor_hour(start) < start else timedelta(0)),
            floor_hour(end),
        )
        watermark = conn.execute(select(estate_hours_state.c.watermark).where(estate_hours_state.c.id == 1)).scalar()
        if watermark is None or last_full <= first_full:
            return hour_figures(conn, start, end)
        found = {
            r.hour: _stored(r)
            for r in conn.execute(
                select(estate_hours).where(estate_hours.c.hour >= first_full, estate_hours.c.hour < last_full)
            )
        }
        for hour in {h for h in self._touched(conn, watermark - _OVERLAP) if first_full <= h < last_full}:
            live = hour_figures(conn, hour, hour + HOUR).get(hour)
            if live is None:
                found.pop(hour, None)
            else:
                found[hour] = live
        for edge_start, edge_end in ((start, first_full), (last_full, end)):
            for hour, figures in hour_figures(conn, edge_start, edge_end).items():
                found[hour] = merge([found[hour], figures]) if hour in found else figures
        return dict(sorted(found.items()))
