"""Live charts kept per job and extended with the points after the last one read, shared by viewers.

A running job's chart was read whole from InfluxDB on every refresh of every viewer, so its cost grew
with the job's length and with the number of people watching. Here each API process keeps each live
job's chart (what the full read gave: every point of a short job, buckets of a long one) and asks
InfluxDB only for the points after the last one it holds, and only when the job's row says there are
some: `backup_jobs.last_telemetry_at` is committed after its point is in InfluxDB (the ingest's
order), so a row newer than the chart means points to append, and a row no newer means none, in
whichever API process the update arrived. Readers of the same refresh share one read: concurrent
readers wait for the read in flight and then find the chart up to date. The chart is read whole
again (re-bucketed) when the appended points would take it over `LIVE_CHART_MAX`.

Time stamps are kept in nanoseconds, as InfluxDB stores them: a "points after" query with the last
point's millisecond would read that point again.
"""

from __future__ import annotations

import asyncio
import math
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pipeline.tsdb import queries
from pipeline.tsdb.encoding import STAGES
from pipeline.tsdb.influx import AsyncInflux

__all__ = ["AHEAD_NS", "LIVE_CHART_MAX", "LIVE_CHART_POINTS", "HeldPerJob", "LiveChart", "LiveCharts"]

LIVE_CHART_POINTS = 600
"""A full read draws the chart from at most this many points; longer jobs are aggregated by InfluxDB."""
LIVE_CHART_MAX = 2 * LIVE_CHART_POINTS
"""Points appended after a full read may take the chart up to this many, then it is read whole again."""
AHEAD_NS = 300 * 10**9
"""Agent timestamps may be up to 300 s ahead of this server's clock (see the ingest path): live reads
look that far past now."""
_MS = 10**6


@dataclass(slots=True)
class LiveChart:
    """One job's chart as this process holds it."""

    origin_ms: int
    """The first point's time: every point's `t` counts whole seconds from it."""
    points: list[dict]
    times_ns: list[int]
    """Each point's time (a bucket's point: the bucket's start)."""
    last_ns: int
    """The last point read: the next read asks for the points after it."""
    loads: dict[str, float]
    """Each stage's load of the last update (stages never reported are left out)."""
    seen_us: int = 0
    """The newest `last_telemetry_at` (epoch µs) this chart has read everything up to."""
    whole_ns: int = 0
    """The last point of the read that drew this chart whole: a cursor before it was given for other
    points (an earlier chart's, or another process's), so its reader gets the whole chart."""
    estimate: tuple | None = None
    """The ETA last estimated from this chart, as (what it was computed from, the estimate): the readers
    of one refresh estimate it once (the chart only grows, so its last point and length tell it apart)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def cursor(self) -> str:
        """What a client passes as `since` to get only the points after this chart's last."""
        return str(self.last_ns)

    def after(self, since_ns: int) -> list[dict] | None:
        """The points after `since_ns`; None when the cursor is from before this chart's whole read
        (the reader's points are not these: it must take the whole chart)."""
        if since_ns < self.whole_ns:
            return None
        return self.points[bisect_right(self.times_ns, since_ns) :]

    def point(self, t_ns: int, speed, progress, phase) -> dict:
        return {
            "t": max(0, int((t_ns // _MS - self.origin_ms) // 1000)),
            "s": int(round(speed or 0)),
            "p": round(float(progress or 0.0), 2),
            "phase": phase or "",
        }


Held = TypeVar("Held")


class HeldPerJob(Generic[Held]):
    """What this process holds of each live job for its readers (a chart, a job's disk curves), read
    whole once and then extended while the job's rows say there is more; readers of one refresh
    share the read in flight. The holder (`Held`) has a `lock` for its extensions."""

    def __init__(self, influx: AsyncInflux, source: str, *, max_jobs: int = 2000) -> None:
        self.influx = influx
        self.source = source
        self.max_jobs = max_jobs
        self._held: OrderedDict[str, Held] = OrderedDict()
        self._first_reads: dict[str, asyncio.Lock] = {}
        self.reads = {"full": 0, "tail": 0, "shared": 0}
        """How often it was read whole, extended, or answered as held (nothing new)."""

    def forget(self, job_id: str) -> None:
        """Drop what is held of a job (it finished: its answer is its summary from now on)."""
        self._held.pop(job_id, None)

    async def _get(
        self,
        job_id: str,
        *,
        read_whole: Callable[[], Awaitable[Held | None]],
        fresh: Callable[[Held], bool],
        extend: Callable[[Held], Awaitable[bool]],
        usable: Callable[[Held], bool] = lambda held: True,
    ) -> Held | None:
        """The job's holder, up to date: read whole when none is held (or the held one is not `usable`),
        answered as held when `fresh`, else extended (`extend` False: read whole again)."""
        held = self._held.get(job_id)
        if held is None or not usable(held):
            lock = self._first_reads.setdefault(job_id, asyncio.Lock())
            async with lock:
                held = self._held.get(job_id)
                if held is None or not usable(held):
                    try:
                        held = await read_whole()
                    finally:
                        self._first_reads.pop(job_id, None)
                    self._keep(job_id, held)
                    return held
        self._held.move_to_end(job_id)
        if fresh(held):
            self.reads["shared"] += 1
            return held
        async with held.lock:
            if fresh(held):  # another reader extended it meanwhile
                self.reads["shared"] += 1
                return held
            if await extend(held):
                return held
            whole = await read_whole()
            self._keep(job_id, whole)
            return whole

    def _keep(self, job_id: str, held: Held | None) -> None:
        if held is None:
            self.forget(job_id)
            return
        self._held[job_id] = held
        self._held.move_to_end(job_id)
        while len(self._held) > self.max_jobs:
            self._held.popitem(last=False)


class LiveCharts(HeldPerJob[LiveChart]):
    """Each live job's chart in this process, read whole once and then extended (see the module)."""

    async def get(self, job_id: str, start_ns: int, newest_us: int | None) -> LiveChart | None:
        """The job's chart with every point up to `newest_us` (the row's `last_telemetry_at`, epoch µs);
        None while it has no points. InfluxDB's errors propagate (the caller falls back to the mirror)."""
        return await self._get(
            job_id,
            read_whole=lambda: self._read_whole(job_id, start_ns, newest_us),
            fresh=lambda chart: newest_us is None or newest_us <= chart.seen_us,
            extend=lambda chart: self._extend(job_id, start_ns, chart, newest_us),
        )

    async def _read_whole(self, job_id: str, start_ns: int, newest_us: int | None) -> LiveChart | None:
        """The chart from every point (short jobs) or from InfluxDB's buckets (long ones)."""
        self.reads["full"] += 1
        end_ns = time.time_ns() + AHEAD_NS
        stats = await self.influx.query(*queries.chart_bounds(self.source, job_id, start_ns, end_ns), epoch="ns")
        values = [r.get("series", [{}])[0].get("values", [[None, 0]])[0] for r in stats]
        count = values[0][1] or 0
        if count == 0:
            return None
        first_ns, last_ns = int(values[1][0]), int(values[2][0])
        load_series = stats[3].get("series") if len(stats) > 3 else None
        last_loads = zip(STAGES, load_series[0]["values"][0][1:], strict=True) if load_series else ()
        loads = {stage: load for stage, load in last_loads if load is not None}
        if count <= LIVE_CHART_POINTS:
            query = queries.chart_points(self.source, job_id, start_ns, end_ns)
        else:
            # Buckets align to the epoch, not to the first point, so a span can touch one more bucket.
            bucket_s = max(1, math.ceil((last_ns - first_ns) / 1e9 / (LIVE_CHART_POINTS - 1)))
            first_ms, last_ms = first_ns // _MS, last_ns // _MS
            query = queries.chart_buckets(self.source, job_id, start_ns, end_ns, first_ms, last_ms, bucket_s)
        result = await self.influx.query(*query, epoch="ns")
        rows = result[0].get("series", [{}])[0].get("values", []) if result else []
        # Everything up to the row read before this read is in it (the row commits after its point).
        chart = LiveChart(first_ns // _MS, [], [], last_ns, loads, max(newest_us or 0, last_ns // 1000), last_ns)
        for t_ns, speed, progress, phase in rows:
            chart.points.append(chart.point(int(t_ns), speed, progress, phase))
            chart.times_ns.append(int(t_ns))
        return chart

    async def _extend(self, job_id: str, start_ns: int, chart: LiveChart, newest_us: int) -> bool:
        """Append the points after the chart's last; False when they would take it over `LIVE_CHART_MAX`
        (the caller reads it whole again)."""
        self.reads["tail"] += 1
        end_ns = time.time_ns() + AHEAD_NS
        room = LIVE_CHART_MAX - len(chart.points)
        query = queries.chart_after(self.source, job_id, start_ns, end_ns, chart.last_ns, room + 1)
        result = await self.influx.query(*query, epoch="ns")
        rows = result[0].get("series", [{}])[0].get("values", []) if result else []
        if len(rows) > room:
            return False
        for t_ns, speed, progress, phase, *loads in rows:
            chart.points.append(chart.point(int(t_ns), speed, progress, phase))
            chart.times_ns.append(int(t_ns))
            chart.last_ns = int(t_ns)
            reported = {stage: load for stage, load in zip(STAGES, loads, strict=True) if load is not None}
            if reported:
                chart.loads = reported
        chart.seen_us = max(newest_us, chart.last_ns // 1000)
        return True
