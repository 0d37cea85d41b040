"""Prometheus metrics of the pipeline: what the API acknowledges and how fast, what the stores cost,
and what the scheduler has done. Names are `sendense_*`; the scrape config is in docs/metrics.md.

The API serves them at `GET /metrics`; with several granian workers on one port
(PROMETHEUS_MULTIPROC_DIR set by `sendense api --workers N`) each worker writes its own files and a
scrape adds them up. The scheduler serves its own on SENDENSE_SCHEDULER_METRICS_PORT.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "ACK_SECONDS",
    "CONTENT_TYPE_LATEST",
    "FAST_PATH_ANSWERS",
    "INFLUX_ERRORS",
    "INFLUX_WRITE_SECONDS",
    "MYSQL_COMMIT_SECONDS",
    "MYSQL_ERRORS",
    "QUEUED_UPDATES",
    "SUMMARY_SECONDS",
    "UPDATES",
    "SchedulerMetrics",
    "count_updates",
    "render",
]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

UPDATES = Counter(
    "sendense_updates",
    "Telemetry updates answered, by outcome: accepted (202), terminal (200), or the refusal's reason",
    ["outcome"],
)
# Each outcome's series bound once: `labels()` takes a lock and a lookup, and the batch path counts
# thousands of updates a request. Also makes every outcome visible (at 0) from the first scrape.
_OUTCOMES = {
    202: UPDATES.labels("accepted"), 200: UPDATES.labels("terminal"), 400: UPDATES.labels("invalid"),
    404: UPDATES.labels("unknown_job"), 409: UPDATES.labels("finished"), 503: UPDATES.labels("unavailable"),
}  # fmt: skip


FAST_PATH_ANSWERS = Counter(
    "sendense_api_fast_path_answers",
    "Single telemetry updates answered by the API's fast path (api/fastpath.py), not by the framework's route",
)


def count_updates(status: int, n: int = 1) -> None:
    """Count `n` updates answered (or, in a batch, reported) with HTTP `status`."""
    child = _OUTCOMES.get(status)
    (child if child is not None else UPDATES.labels(str(status))).inc(n)


ACK_SECONDS = Histogram(
    "sendense_ack_seconds", "Time from an update's arrival to its durable acknowledgement", buckets=_LATENCY
)
INFLUX_WRITE_SECONDS = Histogram(
    "sendense_influx_write_seconds", "InfluxDB write of one group commit's points", buckets=_LATENCY
)
INFLUX_ERRORS = Counter("sendense_influx_write_errors", "Group commits whose InfluxDB write failed")
MYSQL_COMMIT_SECONDS = Histogram(
    "sendense_mysql_commit_seconds",
    "MySQL transaction of one group commit (lock, read status, write state; spans the InfluxDB write)",
    buckets=_LATENCY,
)
MYSQL_ERRORS = Counter("sendense_mysql_commit_errors", "Group commits whose MySQL transaction failed")
SUMMARY_SECONDS = Histogram(
    "sendense_finished_summary_seconds",
    "History reads that computed a finished job's summary before its rollup (once per job and process)",
    buckets=_LATENCY,
)
QUEUED_UPDATES = Gauge(
    "sendense_commit_queue_updates", "Updates waiting for a group commit in this process", multiprocess_mode="livesum"
)


def render(*, all_workers: bool) -> tuple[bytes, str]:
    """The exposition text of this process, or with `all_workers` (prometheus_client's multi-process
    mode, `ApiSettings.metrics_dir` set) of every worker sharing the directory."""
    if all_workers:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class SchedulerMetrics:
    """The scheduler's metrics, in a registry of its own (served by prometheus_client's HTTP server)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rollup_seconds = Histogram(
            "sendense_rollup_seconds", "Rollup of one job (read, compute, commit, purge)", registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
        )  # fmt: skip
        self.rollups = Counter("sendense_rollups", "Rollups, by result: rolled_up or failed", ["result"], registry=r)
        self.runs = Counter(
            "sendense_scheduler_runs", "Scheduler runs, by job and result", ["job", "result"], registry=r
        )
        self.jobs_running = Gauge("sendense_jobs_running", "Jobs pending or running", registry=r)
        self.jobs_waiting = Gauge("sendense_jobs_waiting_rollup", "Finished jobs not rolled up yet", registry=r)
        self.jobs_set_aside = Gauge(
            "sendense_jobs_rollup_failed", "Jobs set aside after too many failed rollups", registry=r
        )
        self.purge_backlog = Gauge(
            "sendense_purge_backlog", "Rolled-up jobs whose raw telemetry is not purged yet", registry=r
        )
        self.summary_drift = Gauge(
            "sendense_summary_drift_machines",
            "Machines whose summary the last reconcile found wrong (and corrected)",
            registry=r,
        )
        self.summary_corrections = Counter(
            "sendense_summary_corrections", "Summary fields corrected by reconciles", registry=r
        )
        self.jobs_changed_outside = Gauge(
            "sendense_jobs_changed_outside",
            "Jobs changed outside the job store since the last reconcile (not reconciled yet)",
            registry=r,
        )
        self.deliveries = Counter(
            "sendense_alert_deliveries",
            "Alert notifications handed to a channel, by channel and result: sent, retried (failed, tried again "
            "later) or refused (a 4xx: recorded, not retried)",
            ["channel", "result"],
            registry=r,
        )
        self.delivery_wait = Histogram(
            "sendense_alert_delivery_wait_seconds", "From a notification's enqueueing to its receiver's acceptance",
            ["channel"], registry=r, buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
        )  # fmt: skip
        self.outbox_pending = Gauge(
            "sendense_alert_notifications_pending", "Notifications in the outbox not delivered yet", registry=r
        )
        self._last_run: dict[str, float] = {}
        self.last_run_age = Gauge(
            "sendense_scheduler_last_run_age_seconds", "Seconds since each job last ran to its end", ["job"], registry=r
        )
        for job in ("rollup", "purge", "reaper", "reconcile", "alerts", "notify", "estate-hours"):
            self.watch(job)

    def watch(self, job: str) -> None:
        """Export the age of `job`'s last run (for jobs a scheduler runs only when configured)."""
        self.last_run_age.labels(job).set_function(self._age(job))

    def _age(self, job: str) -> Callable[[], float]:
        started = time.time()
        return lambda: time.time() - self._last_run.get(job, started)

    def delivered(self, channel: str, result: str, waited: float | None) -> None:
        """One notification's delivery attempt (OutboxSender's observer)."""
        self.deliveries.labels(channel, result).inc()
        if waited is not None:
            self.delivery_wait.labels(channel).observe(max(0.0, waited))

    def ran(self, job: str, result: str) -> None:
        self._last_run[job] = time.time()
        self.runs.labels(job, result).inc()
