"""Telemetry history of one job in the job sheet's three modes: rolled_up, live_snapshots, none."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from anyio import to_thread
from sqlalchemy import Engine, select

from pipeline.clock import epoch_ns
from pipeline.db.tables import backup_disks, backup_jobs, job_disk_charts, job_telemetry_snapshots
from pipeline.insight.baseline import RunBaselines
from pipeline.insight.bottleneck import bottleneck
from pipeline.insight.eta import estimate_eta
from pipeline.jobs.vocabulary import TERMINAL_STATUSES
from pipeline.read.finished import FinishedSummaries
from pipeline.read.live import LIVE_CHART_POINTS, LiveChart, LiveCharts
from pipeline.read.live_disks import MAX_LIVE_DISKS, LiveDiskCharts, format_cursor
from pipeline.tsdb import queries
from pipeline.tsdb.influx import AsyncInflux, InfluxError

__all__ = ["LIVE_CHART_POINTS", "TelemetryHistory"]

log = logging.getLogger(__name__)

NO_DATA = "No telemetry data available for this job"


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
        # Live jobs' charts, extended with new points and shared by the readers of one refresh.
        self.live = LiveCharts(influx, self.source)
        self.live_disks = LiveDiskCharts(influx, self.source)
        self._in_flight: dict[tuple[str, str], asyncio.Future] = {}

    def _job(self, job_id: str, conn=None):
        if conn is None:
            with self.engine.connect() as conn:
                return self._job(job_id, conn)
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

    async def _shared(self, key: tuple[str, str], read: Callable[[], Any]) -> Any:
        """`read()` in a worker thread; readers asking while the read of the same key is in flight share
        it (viewers of one live job refresh together: one MySQL read for all of them, as for InfluxDB)."""
        pending = self._in_flight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(to_thread.run_sync(read))
            self._in_flight[key] = pending
            pending.add_done_callback(partial(self._read_done, key))
        # Shielded: one reader going away must not cancel the read the others wait for.
        return await asyncio.shield(pending)

    def _read_done(self, key: tuple[str, str], done: asyncio.Future) -> None:
        if self._in_flight.get(key) is done:
            del self._in_flight[key]

    async def _row(self, job_id: str):
        """The job's row, read once for the readers of one refresh."""
        return await self._shared(("job", job_id), partial(self._job, job_id))

    async def get(self, job_id: str, since: int | None = None) -> dict | None:
        """The history response for one job, or None if the job does not exist.

        `since` (a live answer's `cursor`): a live answer's `chart_data` holds only the points after
        it, and says so by echoing it in `since`; every other answer is whole, as without it."""
        cached = self._rolled_up.get(job_id)
        if cached is not None:
            self._rolled_up.move_to_end(job_id)
            return cached
        job = await self._row(job_id)
        if job is None:
            return None
        if job.status != "running":
            self.live.forget(job_id)
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
            live, chart, source, origin, loads = await self._chart(job)
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
                    answer.update(await self._eta(job, chart, origin, live))
                    # The stage loads of the last update, and the busiest stage now.
                    answer["current_state"]["stage_load"] = loads
                    answer["bottleneck"] = bottleneck(loads)
                if live is not None:
                    answer["cursor"] = live.cursor
                    after = None if since is None else live.after(since)
                    if after is not None:
                        answer["chart_data"] = after
                        answer["since"] = str(since)
                return answer
        return {"job_id": job_id, "status": job.status, "data_source": "none", "message": NO_DATA}

    async def disks(self, job_id: str, since: dict[int, int] | None = None) -> dict | None:
        """Each disk's speed curve: kept from the rollup (`rolled_up`), from the raw points while the job's
        summary does not exist yet (`live_snapshots`), else `none`; None for an unknown job. `t` counts
        from the job's start, like the job's own chart.

        Live curves are kept and extended (`live_disks.py`) and carry a `cursor`; with `since` (a
        previous answer's cursor, parsed) each disk holds only its points after the cursor's for it,
        and the answer echoes `since`."""
        # The job's row and its disks' rows: one thread hop, one MySQL connection, for all the readers.
        job, seen = await self._shared(("disks", job_id), partial(self._job_and_disks, job_id))
        if job is None:
            return None
        if job.performance_metrics is not None:
            self.live_disks.forget(job_id)
            rows = await to_thread.run_sync(self._disk_charts, job_id)
            disks = [{"disk_index": r.disk_index, "chart_data": r.chart_data} for r in rows]
            source = "rolled_up" if disks else "none"
            return {"job_id": job_id, "status": job.status, "data_source": source, "disks": disks}
        if job.started_at is None:
            return {"job_id": job_id, "status": job.status, "data_source": "none", "disks": []}
        charts = await self.live_disks.get(job_id, epoch_ns(job.started_at), seen)
        if charts is None:
            return {"job_id": job_id, "status": job.status, "data_source": "none", "disks": []}
        answer = {
            "job_id": job_id,
            "status": job.status,
            "data_source": "live_snapshots",
            "disks": charts.answer(since),
            "cursor": charts.cursor,
        }
        if since is not None and charts.follows(since):
            answer["since"] = format_cursor(since)
        return answer

    def _disk_charts(self, job_id: str):
        with self.engine.connect() as conn:
            return conn.execute(
                select(job_disk_charts.c.disk_index, job_disk_charts.c.chart_data)
                .where(job_disk_charts.c.job_id == job_id)
                .order_by(job_disk_charts.c.disk_index)
            ).all()

    def _job_and_disks(self, job_id: str) -> tuple[Any, dict[int, int]]:
        """The job's row, and for a live job each disk with telemetry: its row's `last_telemetry_at`
        (epoch µs), the lowest indexes first."""
        d = backup_disks.c
        with self.engine.connect() as conn:
            job = self._job(job_id, conn)
            if job is None or job.performance_metrics is not None or job.started_at is None:
                return job, {}
            rows = conn.execute(
                select(d.disk_index, d.last_telemetry_at)
                .where(d.job_id == job_id, d.last_telemetry_at.is_not(None))
                .order_by(d.disk_index)
                .limit(MAX_LIVE_DISKS)
            ).all()
        return job, {r.disk_index: epoch_ns(r.last_telemetry_at) // 1000 for r in rows}

    async def eta(self, job_id: str) -> dict:
        """`eta_seconds`, `eta_at` and `eta_reason` of a running job (for GET /backups/{id})."""
        job = await to_thread.run_sync(self._job, job_id)
        if job is None or job.status != "running":
            return {"eta_seconds": None, "eta_at": None, "eta_reason": "the job is not running"}
        live, chart, _, origin, _ = await self._chart(job)
        return await self._eta(job, chart, origin, live)

    async def _eta(self, job, chart: list[dict], origin: float | None, live: LiveChart | None = None) -> dict:
        baseline = self.baselines.cached(job.vm_name, job.backup_type)
        if baseline is None:
            baseline = await to_thread.run_sync(self.baselines.get, job.vm_name, job.backup_type)
        # Kept with a kept chart (see LiveChart.estimate); a chart from the mirror is estimated each time.
        basis = (len(chart), job.total_bytes, baseline.avg_speed_bps, baseline.tail_share)
        if live is not None and live.estimate is not None and live.estimate[0] == basis:
            estimate = live.estimate[1]
        else:
            estimate = estimate_eta(
                [(p["t"], p["p"]) for p in chart],
                history_speed_bps=baseline.avg_speed_bps,
                total_bytes=job.total_bytes,
                history_tail_share=baseline.tail_share,
            )
            if live is not None:
                live.estimate = (basis, estimate)
        if estimate.eta_seconds is None or origin is None:
            return {"eta_seconds": None, "eta_at": None, "eta_reason": estimate.reason or "no telemetry yet"}
        # The estimate runs from the last update, on the agent's clock; the answer runs from now, on the
        # server's: what the server has waited since it heard that update is taken off (an agent whose
        # clock is behind, or that sends late, must not move the end by hours).
        now = time.time()
        waited = 0.0 if job.last_seen_at is None else max(0.0, now - epoch_ns(job.last_seen_at) / 1e9)
        left = max(0.0, estimate.eta_seconds - waited)
        return {"eta_seconds": round(left, 1), "eta_at": datetime.fromtimestamp(now + left, UTC), "eta_reason": None}

    async def _chart(self, job) -> tuple[LiveChart | None, list[dict], str, float | None, dict]:
        """The live chart of a job row as kept (None from the mirror), its points, where they came
        from, the epoch seconds their `t` counts from, and the stage loads of the last update."""
        job_id = job.id
        if job.started_at is None:  # no update accepted yet: no points anywhere
            return None, [], "influxdb", None, {}
        newest = None if job.last_telemetry_at is None else epoch_ns(job.last_telemetry_at) // 1000
        try:
            # Bounded by the job's window, like the rollup's reads (see pipeline/rollup/reader.py).
            live = await self.live.get(job_id, epoch_ns(job.started_at), newest)
        except InfluxError as exc:
            # InfluxDB down: the snapshot mirror in MySQL is the durable fallback (coarser cadence).
            log.warning("history of %s falls back to job_telemetry_snapshots: %s", job_id, exc)
            chart, origin = await to_thread.run_sync(self._chart_from_mirror, job_id)
            return None, chart, "job_telemetry_snapshots", origin, {}
        if live is None:
            return None, [], "influxdb", None, {}
        return live, list(live.points), "influxdb", live.origin_ms / 1000.0, dict(live.loads)

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
