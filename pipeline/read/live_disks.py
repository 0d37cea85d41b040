"""Each live multi-disk job's per-disk curves kept per API process and extended, as `live.py` does for
the job's own chart.

The curves were read whole (bucketed by the job's age) on every refresh, so the buckets moved as the
job aged and a viewer could only replace what it had. Here the first read buckets each disk's points
(about `LIVE_DISK_POINTS` a disk) and fixes those buckets; later reads ask InfluxDB only for the points
of the disks whose row says there are new ones: a disk's `backup_disks.last_telemetry_at` is committed
after its point is in InfluxDB, so a row newer than the disk's curve means points to append, in
whichever API process the update arrived. A disk is read on its own after its own last point (disks
report on their own clocks; one that finished long ago costs nothing), and a disk that gains its first
points later is read whole. The curves are read whole again when a disk would pass `LIVE_DISK_MAX`.

The cursor names each disk's last point (`disk:ns,disk:ns`): `after(since)` gives each disk the points
after its own, and all of them for a disk the cursor does not name.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from bisect import bisect_right
from dataclasses import dataclass, field

from pipeline.read.live import AHEAD_NS, HeldPerJob
from pipeline.tsdb import queries
from pipeline.tsdb.influx import AsyncInflux

__all__ = [
    "CURSOR_PATTERN",
    "LIVE_DISK_MAX",
    "LIVE_DISK_POINTS",
    "MAX_LIVE_DISKS",
    "DiskCharts",
    "LiveDiskCharts",
    "format_cursor",
    "parse_cursor",
]

LIVE_DISK_POINTS = 200
"""A whole read draws each disk's curve in at most about this many buckets."""
LIVE_DISK_MAX = 2 * LIVE_DISK_POINTS
"""Points appended after a whole read may take a disk's curve up to this many, then it is read whole."""
MAX_LIVE_DISKS = 32
"""The disks drawn (the lowest indexes with telemetry)."""
CURSOR_PATTERN = r"^[0-9]{1,3}:[0-9]{1,19}(,[0-9]{1,3}:[0-9]{1,19}){0,31}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_MS = 10**6


def parse_cursor(text: str) -> dict[int, int]:
    """A disk cursor as {disk_index: last point's epoch ns}; ValueError when it is not one. A disk named
    twice keeps its earlier time (an answer then repeats points rather than leaving any out)."""
    if not _CURSOR.match(text):
        raise ValueError("expected disk:nanoseconds pairs joined by ',' (a previous answer's cursor)")
    since: dict[int, int] = {}
    for pair in text.split(","):
        disk, _, ns = pair.partition(":")
        index, time_ns = int(disk), int(ns)
        since[index] = min(time_ns, since.get(index, time_ns))
    return since


def format_cursor(since: dict[int, int]) -> str:
    """The text of a disk cursor (what `parse_cursor` reads), disks in order."""
    return ",".join(f"{disk}:{ns}" for disk, ns in sorted(since.items()))


@dataclass(slots=True)
class DiskCurve:
    """One disk's curve as this process holds it."""

    points: list[dict]
    times_ns: list[int]
    """Each point's time (a bucket's point: the bucket's start)."""
    last_ns: int
    """The disk's last point read: the next read asks for the points after it."""
    seen_us: int
    """The newest `last_telemetry_at` (epoch µs) of the disk's row this curve has everything up to."""
    whole_ns: int = 0
    """The disk's last point of the read that drew the curves whole (0: the disk came after it)."""


@dataclass(slots=True)
class DiskCharts:
    """A job's disk curves; `t` counts whole seconds from the job's start."""

    start_ns: int
    curves: dict[int, DiskCurve]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def cursor(self) -> str:
        """What a client passes as `since` to get only the points after these curves' last."""
        return format_cursor({disk: curve.last_ns for disk, curve in self.curves.items()})

    def follows(self, since: dict[int, int]) -> bool:
        """Whether a cursor was given for these curves: none of its disks is before their whole read (an
        earlier read's cursor, or another process's, is answered whole)."""
        return all(since[d] >= c.whole_ns for d, c in self.curves.items() if d in since)

    def answer(self, since: dict[int, int] | None = None) -> list[dict]:
        """Every disk's curve, or with a cursor they follow only each disk's points after the cursor's
        for it."""
        if since is not None and not self.follows(since):
            since = None
        disks = []
        for disk, curve in sorted(self.curves.items()):
            points = curve.points
            if since is not None and disk in since:
                points = points[bisect_right(curve.times_ns, since[disk]) :]
            disks.append({"disk_index": disk, "chart_data": list(points)})
        return disks

    def point(self, t_ns: int, speed, progress) -> dict:
        return {
            "t": max(0, round((t_ns // _MS - self.start_ns // _MS) / 1000)),
            "s": round(speed or 0),
            "p": round(float(progress or 0), 2),
        }


class LiveDiskCharts(HeldPerJob[DiskCharts]):
    """Each live job's disk curves in this process, read whole once and then extended (see the module)."""

    def __init__(self, influx: AsyncInflux, source: str, *, max_jobs: int = 2000) -> None:
        super().__init__(influx, source, max_jobs=max_jobs)
        self.reads["disks"] = 0
        """How many disks the extensions read."""

    async def get(self, job_id: str, start_ns: int, rows: dict[int, int]) -> DiskCharts | None:
        """The job's disk curves with every point up to each disk's row (`rows`: disk index → its
        `last_telemetry_at` in epoch µs, only disks with telemetry); None while no disk has points.
        InfluxDB's errors propagate."""
        rows = dict(sorted(rows.items())[:MAX_LIVE_DISKS])
        return await self._get(
            job_id,
            read_whole=lambda: self._read_whole(job_id, start_ns, rows),
            fresh=lambda charts: not self._stale(charts, rows),
            extend=lambda charts: self._extend(job_id, charts, self._stale(charts, rows)),
            usable=lambda charts: charts.start_ns == start_ns,
        )

    @staticmethod
    def _stale(charts: DiskCharts, rows: dict[int, int]) -> dict[int, int]:
        """The disks with points the curves do not hold yet: disk → its row's time (epoch µs)."""
        stale = {}
        for disk, seen_us in rows.items():
            curve = charts.curves.get(disk)
            if curve is None or seen_us > curve.seen_us:
                stale[disk] = seen_us
        return stale

    async def _read_whole(self, job_id: str, start_ns: int, rows: dict[int, int]) -> DiskCharts | None:
        """Each disk's curve in buckets of the job's age over `LIVE_DISK_POINTS`, and its last point."""
        self.reads["full"] += 1
        end_ns = time.time_ns() + AHEAD_NS
        bucket = max(1, math.ceil((end_ns - start_ns) / 1e9 / LIVE_DISK_POINTS))
        query = queries.disk_curves_live(self.source, job_id, start_ns, end_ns, bucket)
        result = await self.influx.query(*query, epoch="ns")
        lasts = {}
        for series in result[1].get("series", []) if len(result) > 1 else []:
            disk = _disk(series)
            if disk is not None and series.get("values"):
                lasts[disk] = int(series["values"][0][0])
        charts = DiskCharts(start_ns, {})
        for series in result[0].get("series", []) if result else []:
            disk = _disk(series)
            if disk is None or disk not in lasts or (rows and disk not in rows):
                continue
            if not rows and len(charts.curves) >= MAX_LIVE_DISKS:
                continue
            curve = DiskCurve([], [], lasts[disk], max(rows.get(disk, 0), lasts[disk] // 1000), lasts[disk])
            for t_ns, speed, progress in series.get("values", []):
                curve.points.append(charts.point(int(t_ns), speed, progress))
                curve.times_ns.append(int(t_ns))
            charts.curves[disk] = curve
        return charts if charts.curves else None

    async def _extend(self, job_id: str, charts: DiskCharts, stale: dict[int, int]) -> bool:
        """Append each stale disk's points after its last (all of a disk new to the curves); False when
        a disk would pass `LIVE_DISK_MAX` (the caller reads them whole again)."""
        self.reads["tail"] += 1
        self.reads["disks"] += len(stale)
        end_ns = time.time_ns() + AHEAD_NS
        disks = sorted(stale)
        after = [charts.curves[d].last_ns if d in charts.curves else charts.start_ns - 1 for d in disks]
        room = [LIVE_DISK_MAX - len(charts.curves[d].points) if d in charts.curves else LIVE_DISK_MAX for d in disks]
        query = queries.disk_points_after(self.source, job_id, charts.start_ns, end_ns, disks, after, room)
        result = await self.influx.query(*query, epoch="ns")
        read = []
        for disk, space, statement in zip(disks, room, result, strict=False):
            rows = statement.get("series", [{}])[0].get("values", [])
            if len(rows) > space:
                return False
            read.append((disk, rows))
        for disk, rows in read:
            curve = charts.curves.get(disk)
            if curve is None:
                if not rows:
                    continue  # its row is ahead of InfluxDB's answer only if written outside the API
                curve = charts.curves[disk] = DiskCurve([], [], 0, 0)
            for t_ns, speed, progress in rows:
                curve.points.append(charts.point(int(t_ns), speed, progress))
                curve.times_ns.append(int(t_ns))
                curve.last_ns = int(t_ns)
            curve.seen_us = max(stale[disk], curve.last_ns // 1000)
        return True


def _disk(series: dict) -> int | None:
    disk = series.get("tags", {}).get("disk_index", "")
    return int(disk) if disk.isascii() and disk.isdigit() and len(disk) <= 3 else None
