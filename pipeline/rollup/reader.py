"""Reads a finished job's raw points from InfluxDB, streamed in chunks into columnar samples."""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from pipeline.rollup import pushdown
from pipeline.rollup.metrics import DiskSummary, JobTotals, SampleColumns
from pipeline.rollup.pushdown import Bucket, JobAggregates, Point
from pipeline.tsdb import queries
from pipeline.tsdb.encoding import STAGES
from pipeline.tsdb.influx import SyncInflux

__all__ = ["JobWindow", "TelemetryReader"]

_DISK_INDEX = re.compile(r"[0-9]{1,3}")
# The pushed-down rollup's two first requests go at once: InfluxDB answers each on its own core.
# (httpx clients may be shared between threads.)
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="influx-aggregates")
# Every query is bounded by the job's time window (pipeline/tsdb/queries.py): InfluxDB then opens only
# the shards of those days, and a field of the wrong type written into another day's shard (by another
# writer) cannot change the type InfluxDB answers this job's fields with.


@dataclass(frozen=True, slots=True)
class JobWindow:
    """A job and the time span its points lie in (epoch nanoseconds, both ends included).

    The job's own points end with its last accepted update (`end_ns`): a point stamped later was
    refused (409), even if it reached InfluxDB. Its disks' updates may be stamped a little later than
    the job's own last one, so their span ends `disk_margin_ns` later.
    """

    job_id: str
    start_ns: int
    end_ns: int
    disk_margin_ns: int = 0


def _first_row(result: dict) -> list | None:
    series = result.get("series")
    return series[0]["values"][0] if series else None


def _values(result: dict) -> list[list]:
    series = result.get("series")
    return series[0]["values"] if series else []


def _point(row: list) -> Point:
    t, speed, progress, phase = row
    return Point(int(t), int(speed or 0), float(progress or 0.0), phase or "")


def _totals(result: dict) -> JobTotals:
    row = _first_row(result)
    if row is None:
        return JobTotals()
    _, sent, total, workers = row
    return JobTotals(int(sent or 0), int(total or 0), None if workers is None else int(workers))


def _loads(result: dict) -> dict[str, float | None]:
    row = _first_row(result)
    if row is None:
        return dict.fromkeys(STAGES)
    return {stage: None if v is None else float(v) for stage, v in zip(STAGES, row[1:], strict=True)}


def _point_with(rows: list[list], speed: int) -> Point:
    """The point of `rows` (those of one millisecond) with the speed a selector found there."""
    return next((_point(r) for r in rows if r[1] == speed), _point(rows[0]))


class TelemetryReader:
    """Job-level samples and per-disk aggregates of one job; values are bound parameters."""

    def __init__(self, influx: SyncInflux, raw_rp: str) -> None:
        self.influx = influx
        self.source = queries.source(influx.settings.database, raw_rp)

    def samples(self, window: JobWindow, chunk_size: int = 50_000) -> SampleColumns:
        """Every job-level point's time, speed, progress and phase, in time order, streamed in chunks.

        Only the columns the curve needs are read: InfluxDB's time to answer grows with every field
        selected. Bytes and worker counts come from `totals`, aggregated by InfluxDB.
        """
        columns = SampleColumns()
        query = queries.job_samples(self.source, window.job_id, window.start_ns, window.end_ns)
        for series in self.influx.query_chunks(query.text, query.params, epoch="ms", chunk_size=chunk_size):
            rows = series.get("values") or []
            if not rows:
                continue
            t, speed, progress, phase = zip(*rows, strict=True)
            zeros = [0] * len(rows)
            seconds = (np.asarray(t, dtype=np.float64) / 1000.0).tolist()
            try:
                # Every point the API writes has all three fields: pass InfluxDB's values as they are.
                columns.extend(seconds, speed, progress, phase, zeros, zeros, [None] * len(rows))
            except TypeError:  # a point written by someone else, with a field missing (None)
                columns.extend(
                    seconds,
                    [int(v or 0) for v in speed],
                    [float(v or 0.0) for v in progress],
                    [v or "" for v in phase],
                    zeros,
                    zeros,
                    [None] * len(rows),
                )
        return columns

    def aggregates(self, window: JobWindow, buckets: int = 100) -> JobAggregates | None:
        """The job-level figures and curve computed by InfluxDB: two requests sent at once (figures;
        buckets), whatever the job's length, then one for the peak's and the minimum's points and the
        points of the buckets where the phase changes.

        None when the points are not all the API's own (a point without progress or phase, written by
        someone else): `samples()` reads those as every point, the only way to count them as the rollup
        always has. Also None for a job without job-level points.
        """
        start, end = window.start_ns, window.end_ns
        width = pushdown.bucket_width_ms(start // 10**6, end // 10**6, buckets)
        query = partial(self.influx.query, epoch="ms")
        figures = _POOL.submit(query, *queries.job_aggregates(self.source, window.job_id, start, end))
        curve, distinct, fields, loads = query(*queries.job_buckets(self.source, window.job_id, start, end, width))
        *answers, totals = figures.result()
        head, first_row, last_row, peak_row, low_row = (_first_row(r) for r in answers)
        if head is None or first_row is None or last_row is None or peak_row is None or not head[1]:
            return None
        count = int(head[1])
        if (_first_row(fields) or [None])[1:] != [count, count]:
            return None
        first, last = _point(first_row), _point(last_row)
        phases_in = dict(_values(distinct))
        found = tuple(
            Bucket(int(t), float(mean or 0.0), float(p or 0.0), phase or "", int(phases_in.get(t, 1)))
            for t, mean, p, phase in _values(curve)
        )
        changed = pushdown.changed_buckets(found, first.phase)
        # One request: the peak's and the minimum's points (found by their millisecond), then the
        # changed buckets' points.
        exact = [(int(peak_row[0]), peak_row[1])] + ([(int(low_row[0]), low_row[1])] if low_row is not None else [])
        ranges = [(t, t + 1) for t, _ in exact] + [(found[i].start_ms, found[i].start_ms + width) for i in changed]
        answers = [_values(a) for a in query(*queries.job_points_at(self.source, window.job_id, start, end, ranges))]
        peak = _point_with(answers[0], exact[0][1])
        low = _point_with(answers[1], exact[1][1]) if low_row is not None else None
        before = [found[i - 1].last_phase if i else first.phase for i in changed]
        changes = pushdown.phase_changes(
            (b, [(int(r[0]), r[3]) for r in rows]) for b, rows in zip(before, answers[len(exact) :], strict=True)
        )
        durations = pushdown.phase_runs(first, last.t_ms, changes)
        integral = float(head[2] or 0.0)
        return JobAggregates(count, first, last, peak, low, integral, found, durations, _totals(totals), _loads(loads))

    def totals(self, window: JobWindow) -> JobTotals:
        """The job's last byte counts and its largest worker count, aggregated by InfluxDB."""
        result = self.influx.query(*queries.job_totals(self.source, window.job_id, window.start_ns, window.end_ns))
        return _totals(result[0] if result else {})

    def stage_loads(self, window: JobWindow) -> dict[str, float | None]:
        """Each stage's mean load over the job's job-level points (None for a stage never reported)."""
        result = self.influx.query(*queries.stage_means(self.source, window.job_id, window.start_ns, window.end_ns))
        return _loads(result[0] if result else {})

    def disk_curves(self, window: JobWindow, max_points: int = 60, max_disks: int = 32) -> dict[int, list[dict]]:
        """Each disk's speed curve in at most about `max_points` buckets (mean speed, last progress), `t` in
        seconds from the window's start: kept beside the summary once the raw points are gone."""
        span = (window.end_ns + window.disk_margin_ns - window.start_ns) / 1e9
        bucket = max(1, math.ceil(span / max_points))
        end = window.end_ns + window.disk_margin_ns
        result = self.influx.query(
            *queries.disk_curves(self.source, window.job_id, window.start_ns, end, bucket), epoch="ms"
        )
        start_ms = window.start_ns / 1e6
        curves: dict[int, list[dict]] = {}
        for series in result[0].get("series", []) if result else []:
            disk = series.get("tags", {}).get("disk_index", "")
            if not _DISK_INDEX.fullmatch(disk) or len(curves) >= max_disks:
                continue
            curves[int(disk)] = [
                {"t": max(0, round((t - start_ms) / 1000)), "s": round(speed or 0), "p": round(float(p or 0), 2)}
                for t, speed, p in series.get("values", [])
            ]
        return dict(sorted(curves.items()))

    def disks(self, window: JobWindow) -> list[DiskSummary]:
        """Per-disk summaries computed by InfluxDB: counts, peaks, bytes and a time-weighted average."""
        end = window.end_ns + window.disk_margin_ns
        results = self.influx.query(*queries.disk_stats(self.source, window.job_id, window.start_ns, end), epoch="ms")

        def by_disk(result: dict) -> dict[int, list]:
            return {
                int(s["tags"]["disk_index"]): s["values"][0]
                for s in result.get("series", [])
                # Another writer's point may carry any tag value ("²" passes isdigit(), then int() fails).
                if _DISK_INDEX.fullmatch(s.get("tags", {}).get("disk_index", ""))
            }

        stats, integrals, firsts, lasts = (by_disk(r) for r in results)
        summaries = []
        for disk, (_, count, peak, sent, total) in sorted(stats.items()):
            span = (lasts[disk][0] - firsts[disk][0]) / 1000.0 if disk in firsts and disk in lasts else 0.0
            area = integrals.get(disk, [0, 0])[1] or 0.0
            avg = area / span if span > 0 else float(lasts.get(disk, [0, peak])[1] or 0)
            summaries.append(
                DiskSummary(
                    disk_index=disk,
                    snapshots_recorded=int(count or 0),
                    bytes_transferred=int(sent or 0),
                    total_bytes=int(total or 0),
                    peak_speed_bps=int(peak or 0),
                    avg_speed_bps=int(round(avg)),
                )
            )
        return summaries
