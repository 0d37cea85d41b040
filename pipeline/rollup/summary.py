"""The summary of one finished job from its points: what the scheduler stores, and the API serves until it has."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, Row

from pipeline.clock import epoch_ns
from pipeline.db.tables import backup_jobs
from pipeline.insight.anomaly import RunFigures, detect_anomalies
from pipeline.insight.baseline import previous_runs
from pipeline.insight.bottleneck import bottleneck
from pipeline.rollup.metrics import JobTotals, SampleColumns, headline, rollup_metrics
from pipeline.rollup.reader import JobWindow, TelemetryReader

__all__ = ["PUSHDOWN_AFTER_SECONDS", "SUMMARY_COLUMNS", "JobSummarizer"]

SUMMARY_COLUMNS = (
    backup_jobs.c.id,
    backup_jobs.c.vm_name,
    backup_jobs.c.backup_type,
    backup_jobs.c.status,
    backup_jobs.c.created_at,
    backup_jobs.c.started_at,
    backup_jobs.c.completed_at,
    backup_jobs.c.last_telemetry_at,
)
"""The columns of a job row `JobSummarizer.summarize` reads."""

PUSHDOWN_AFTER_SECONDS = 3600
"""Jobs that ran longer are summarised from InfluxDB's aggregates; shorter ones (at most a few thousand
points) from every point, which costs them fewer statements (bench/rollup_burst.py measures both)."""

# Points are stamped from started_at (the earliest accepted update) to the job's last accepted update;
# a disk's update may be stamped a little after the job's own last one.
_DISK_MARGIN_NS = 300 * 10**9


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.replace(tzinfo=UTC).timestamp()


class JobSummarizer:
    """Computes a finished job's `performance_metrics` and per-disk curves from its raw points.

    One code path for the scheduler's rollup and the API's answer before it: a finished job's points
    are final (its terminal update commits only after every acknowledged point is in InfluxDB, and
    later updates are refused), so both compute the same summary from the same row and points.
    Blocking (the reader is synchronous); the API runs it in a worker thread.

    The figures and the chart of a job longer than `PUSHDOWN_AFTER_SECONDS` come from InfluxDB's
    aggregates (`TelemetryReader.aggregates`); a shorter job, one whose every point fits the chart, or
    one with points the API did not write, is read point by point.
    `pushdown=False` reads every point always: the reference the pushed-down figures are tested against.
    """

    def __init__(
        self,
        reader: TelemetryReader,
        max_chart_points: int,
        *,
        pushdown: bool = True,
        pushdown_after: float = PUSHDOWN_AFTER_SECONDS,
    ) -> None:
        self.reader = reader
        self.max_chart_points = max_chart_points
        self.pushdown_after = pushdown_after
        self.pushdown = pushdown
        """Figures from InfluxDB's aggregates (False: from every point read, the reference they equal)."""

    def summarize(self, job: Row, conn: Connection, *, curves: bool = True) -> tuple[dict, dict[int, list[dict]]]:
        """(performance_metrics, {disk_index: curve}) of a finished job row with `SUMMARY_COLUMNS`;
        `conn` reads the VM's previous runs (the anomaly baseline). `curves=False`: no disk curves read."""
        reader = self.reader
        common = {
            "final_status": job.status,
            "started_at": _epoch(job.started_at),
            "completed_at": _epoch(job.completed_at),
            "max_chart_points": self.max_chart_points,
        }
        if job.started_at is None:  # no update was ever accepted: no points to read
            return rollup_metrics(SampleColumns(), totals=JobTotals(), **common), {}
        ends = [m for m in (job.completed_at, job.last_telemetry_at) if m is not None]
        # Stored times are whole microseconds; a point's nanoseconds may go 999 past them.
        window = JobWindow(job.id, epoch_ns(job.started_at), epoch_ns(max(ends)) + 999, _DISK_MARGIN_NS)
        disks = reader.disks(window)
        span = (window.end_ns - window.start_ns) / 1e9
        pushed = self.pushdown and span > self.pushdown_after
        aggregates = reader.aggregates(window, self.max_chart_points) if pushed else None
        if aggregates is not None:
            totals, loads = aggregates.totals, aggregates.stage_loads
        else:
            totals, loads = reader.totals(window), reader.stage_loads(window)
        if aggregates is not None and aggregates.count > self.max_chart_points:
            samples = aggregates.curve()
            figures = aggregates.figures(common["started_at"], common["completed_at"])
            duration, avg = figures.duration, figures.avg_speed
        else:
            samples, figures = reader.samples(window), None
            duration, avg = headline(samples, started_at=common["started_at"], completed_at=common["completed_at"])
        extra: dict = {}
        limiting = bottleneck(loads)
        if limiting is not None:
            extra["bottleneck"] = limiting  # the mean load of each stage over the run, and the busiest
        if job.status == "completed":  # a failed or cancelled run is unusual by its status already
            run = RunFigures(duration, totals.bytes_transferred, round(avg))
            previous = previous_runs(conn, job.vm_name, job.backup_type, job.id, job.created_at)
            extra["anomalies"] = [a.as_dict() for a in detect_anomalies(run, previous)]
            extra["anomaly_baseline_runs"] = len(previous)
        kept = reader.disk_curves(window) if disks and curves else {}
        metrics = rollup_metrics(samples, disks=disks, totals=totals, extra=extra, figures=figures, **common)
        return metrics, kept
