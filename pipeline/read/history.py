"""Telemetry history of one job in the job sheet's three modes: rolled_up, live_snapshots, none."""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from datetime import UTC, datetime

from anyio import to_thread
from sqlalchemy import Engine, select

from pipeline.clock import epoch_ns
from pipeline.db.tables import backup_jobs, job_disk_charts, job_telemetry_snapshots
from pipeline.insight.baseline import RunBaselines
from pipeline.insight.bottleneck import bottleneck
from pipeline.insight.eta import estimate_eta
from pipeline.jobs.vocabulary import TERMINAL_STATUSES
from pipeline.read.finished import FinishedSummaries
from pipeline.tsdb import queries
from pipeline.tsdb.encoding import STAGES
from pipeline.tsdb.influx import AsyncInflux, InfluxError

__all__ = ["LIVE_CHART_POINTS", "TelemetryHistory"]

log = logging.getLogger(__name__)

# A live chart is drawn from at most this many points; longer jobs are aggregated by InfluxDB.
LIVE_CHART_POINTS = 600
# Each disk's live curve in at most about this many buckets.
LIVE_DISK_POINTS = 200
NO_DATA = "No telemetry data available for this job"
# Agent timestamps may be up to 300 s ahead of this server's clock (see the ingest path).
_AHEAD_NS = 300 * 10**9


class TelemetryHistory:
    """Reads a job's history: its rolled-up summary, else its raw points, else says there is none."""

    def __init__(
        self,
        engine: Engine,
        influx: AsyncInflux,
        raw_rp: str,
        *,
        finished: FinishedSummaries | None = None,
        cache_size: int = 5000,
    ) -> None:
        self.engine = engine
        self.influx = influx
        # Summaries of finished jobs not rolled up yet (None: such jobs are answered from their points).
        self.finished = finished
        self.baselines = RunBaselines(engine)
        # A rolled-up answer never changes (the summary is written once), so it is kept in memory.
        self._rolled_up: OrderedDict[str, dict] = OrderedDict()
        self.cache_size = cache_size
        self.source = queries.source(influx.settings.database, raw_rp)

    def _job(self, job_id: str):
        with self.engine.connect() as conn:
            return conn.execute(
                select(
                    backup_jobs.c.id,
                    backup_jobs.c.status,
                    backup_jobs.c.performance_metrics,
                    backup_jobs.c.bytes_transferred,
                    backup_jobs.c.total_bytes,
                    backup_jobs.c.transfer_speed_bps,
                    backup_jobs.c.progress_percent,
                    backup_jobs.c.current_phase,
                    backup_jobs.c.last_telemetry_at,
                    backup_jobs.c.last_seen_at,
                    backup_jobs.c.started_at,
                    backup_jobs.c.vm_name,
                    backup_jobs.c.backup_type,
                ).where(backup_jobs.c.id == job_id)
            ).first()

    async def get(self, job_id: str) -> dict | None:
        """The history response for one job, or None if the job does not exist."""
        cached = self._rolled_up.get(job_id)
        if cached is not None:
            self._rolled_up.move_to_end(job_id)
            return cached
        job = await to_thread.run_sync(self._job, job_id)
        if job is None:
            return None
        if job.performance_metrics is not None:
            answer = {
                "job_id": job_id,
                "status": job.status,
                "data_source": "rolled_up",
                "performance_metrics": job.performance_metrics,
            }
            self._rolled_up[job_id] = answer
            if len(self._rolled_up) > self.cache_size:
                self._rolled_up.popitem(last=False)
            if self.finished is not None:
                self.finished.forget(job_id)
            return answer
        if job.status in TERMINAL_STATUSES and self.finished is not None:
            # A client stops polling at the first answer whose status is not `running` (the job sheet's
            # hook does): a finished job's answer is its final summary, computed now if not stored yet.
            metrics = await self.finished.get(job_id)
            if metrics is not None:
                return {
                    "job_id": job_id,
                    "status": job.status,
                    "data_source": "rolled_up",
                    "performance_metrics": metrics,
                }
        if job.status == "running" or job.status in TERMINAL_STATUSES:
            chart, source, origin, loads = await self._chart(job_id, job.started_at)
            if chart or job.status == "running":
                answer = {
                    "job_id": job_id,
                    "status": job.status,
                    "data_source": "live_snapshots",
                    "current_state": {
                        "bytes_transferred": job.bytes_transferred,
                        "total_bytes": job.total_bytes,
                        "transfer_speed_bps": job.transfer_speed_bps,
                        "progress_percent": float(job.progress_percent),
                        # The column is NULL for rows written without telemetry; the job sheet reads a string.
                        "current_phase": job.current_phase or "",
                    },
                    "chart_data": chart,
                    "chart_source": source,
                }
                if job.status == "running":
                    answer.update(await self._eta(job, chart, origin))
                    # The stage loads of the last update, and the busiest stage now.
                    answer["current_state"]["stage_load"] = loads
                    answer["bottleneck"] = bottleneck(loads)
                return answer
        return {"job_id": job_id, "status": job.status, "data_source": "none", "message": NO_DATA}

    async def disks(self, job_id: str) -> dict | None:
        """Each disk's speed curve: kept from the rollup (`rolled_up`), from the raw points while the job's
        summary does not exist yet (`live_snapshots`), else `none`; None for an unknown job. `t` counts
        from the job's start, like the job's own chart."""
        job = await to_thread.run_sync(self._job, job_id)
        if job is None:
            return None
        if job.performance_metrics is not None:
            rows = await to_thread.run_sync(self._disk_charts, job_id)
            source = "rolled_up"
            disks = [{"disk_index": r.disk_index, "chart_data": r.chart_data} for r in rows]
        elif job.started_at is not None:
            source = "live_snapshots"
            disks = await self._live_disks(job_id, epoch_ns(job.started_at))
        else:
            source, disks = "none", []
        return {"job_id": job_id, "status": job.status, "data_source": source if disks else "none", "disks": disks}

    def _disk_charts(self, job_id: str):
        with self.engine.connect() as conn:
            return conn.execute(
                select(job_disk_charts.c.disk_index, job_disk_charts.c.chart_data)
                .where(job_disk_charts.c.job_id == job_id)
                .order_by(job_disk_charts.c.disk_index)
            ).all()

    async def _live_disks(self, job_id: str, start_ns: int) -> list[dict]:
        end_ns = time.time_ns() + _AHEAD_NS
        bucket = max(1, math.ceil((end_ns - start_ns) / 1e9 / LIVE_DISK_POINTS))
        result = await self.influx.query(
            *queries.disk_curves(self.source, job_id, start_ns, end_ns, bucket), epoch="ms"
        )
        disks = []
        for series in result[0].get("series", []) if result else []:
            disk = series.get("tags", {}).get("disk_index", "")
            if not disk.isascii() or not disk.isdigit() or len(disks) >= 32:
                continue
            chart = [
                {"t": max(0, round((t - start_ns / 1e6) / 1000)), "s": round(speed or 0), "p": round(float(p or 0), 2)}
                for t, speed, p in series.get("values", [])
            ]
            disks.append({"disk_index": int(disk), "chart_data": chart})
        return sorted(disks, key=lambda d: d["disk_index"])

    async def eta(self, job_id: str) -> dict:
        """`eta_seconds`, `eta_at` and `eta_reason` of a running job (for GET /backups/{id})."""
        job = await to_thread.run_sync(self._job, job_id)
        if job is None or job.status != "running":
            return {"eta_seconds": None, "eta_at": None, "eta_reason": "the job is not running"}
        chart, _, origin, _ = await self._chart(job_id, job.started_at)
        return await self._eta(job, chart, origin)

    async def _eta(self, job, chart: list[dict], origin: float | None) -> dict:
        baseline = await to_thread.run_sync(self.baselines.get, job.vm_name, job.backup_type)
        estimate = estimate_eta(
            [(p["t"], p["p"]) for p in chart],
            history_speed_bps=baseline.avg_speed_bps,
            total_bytes=job.total_bytes,
            history_tail_share=baseline.tail_share,
        )
        if estimate.eta_seconds is None or origin is None:
            return {"eta_seconds": None, "eta_at": None, "eta_reason": estimate.reason or "no telemetry yet"}
        # The estimate runs from the last update, on the agent's clock; the answer runs from now, on the
        # server's: what the server has waited since it heard that update is taken off (an agent whose
        # clock is behind, or that sends late, must not move the end by hours).
        now = time.time()
        waited = 0.0 if job.last_seen_at is None else max(0.0, now - epoch_ns(job.last_seen_at) / 1e9)
        left = max(0.0, estimate.eta_seconds - waited)
        return {"eta_seconds": round(left, 1), "eta_at": datetime.fromtimestamp(now + left, UTC), "eta_reason": None}

    async def _chart(self, job_id: str, started_at: datetime | None) -> tuple[list[dict], str, float | None, dict]:
        """The live chart, where it came from, the epoch seconds its `t` counts from, and the stage
        loads of the last update."""
        if started_at is None:  # no update accepted yet: no points anywhere
            return [], "influxdb", None, {}
        try:
            return await self._chart_from_influx(job_id, epoch_ns(started_at))
        except InfluxError as exc:
            # InfluxDB down: the snapshot mirror in MySQL is the durable fallback (coarser cadence).
            log.warning("history of %s falls back to job_telemetry_snapshots: %s", job_id, exc)
            chart, origin = await to_thread.run_sync(self._chart_from_mirror, job_id)
            return chart, "job_telemetry_snapshots", origin, {}

    async def _chart_from_influx(self, job_id: str, start_ns: int) -> tuple[list[dict], str, float | None, dict]:
        # Bounded by the job's window, like the rollup's reads (see pipeline/rollup/reader.py).
        end_ns = time.time_ns() + _AHEAD_NS
        stats = await self.influx.query(*queries.chart_bounds(self.source, job_id, start_ns, end_ns), epoch="ms")
        values = [r.get("series", [{}])[0].get("values", [[None, 0]])[0] for r in stats]
        load_series = stats[3].get("series") if len(stats) > 3 else None
        # A stage the agent never reported comes back null: it is left out, not answered as null.
        last_loads = zip(STAGES, load_series[0]["values"][0][1:], strict=True) if load_series else ()
        loads = {stage: load for stage, load in last_loads if load is not None}
        count = values[0][1] or 0
        if count == 0:
            return [], "influxdb", None, {}
        first_ms, last_ms = int(values[1][0]), int(values[2][0])
        if count <= LIVE_CHART_POINTS:
            query = queries.chart_points(self.source, job_id, start_ns, end_ns)
        else:
            # Long jobs: InfluxDB aggregates into at most LIVE_CHART_POINTS buckets (a few ms for a day of points).
            # Buckets align to the epoch, not to the first point, so a span can touch one more bucket.
            bucket_s = max(1, math.ceil((last_ms - first_ms) / 1000 / (LIVE_CHART_POINTS - 1)))
            query = queries.chart_buckets(self.source, job_id, start_ns, end_ns, first_ms, last_ms, bucket_s)
        result = await self.influx.query(*query, epoch="ms")
        rows = result[0].get("series", [{}])[0].get("values", []) if result else []
        chart = [
            {
                "t": max(0, int((ts - first_ms) // 1000)),
                "s": int(round(speed or 0)),
                "p": round(float(progress or 0.0), 2),
                "phase": phase or "",
            }
            for ts, speed, progress, phase in rows
        ]
        return chart, "influxdb", first_ms / 1000.0, loads

    def _chart_from_mirror(self, job_id: str) -> tuple[list[dict], float | None]:
        t = job_telemetry_snapshots.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.timestamp, t.transfer_speed_bps, t.progress_percent, t.current_phase)
                .where(t.job_id == job_id, t.disk_index.is_(None))
                .order_by(t.timestamp)
            ).all()
        if not rows:
            return [], None
        start: datetime = rows[0].timestamp
        chart = [
            {
                "t": int((r.timestamp - start).total_seconds()),
                "s": int(r.transfer_speed_bps or 0),
                "p": float(r.progress_percent or 0),
                "phase": r.current_phase or "",
            }
            for r in rows
        ]
        return chart, start.replace(tzinfo=UTC).timestamp()
