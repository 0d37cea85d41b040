"""build_scheduler(settings): rollup, purge, reaper, reconcile, alert, notify and daily-report jobs in one APScheduler
process."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.blocking import BlockingScheduler

from pipeline.alerts.delivery.alertmanager import AlertmanagerChannel
from pipeline.alerts.delivery.channel import OneAtATime, RetryPolicy
from pipeline.alerts.delivery.channels import build_channels
from pipeline.alerts.delivery.sender import OutboxSender, SendRun
from pipeline.alerts.evaluator import AlertEvaluator, EvaluationRun
from pipeline.alerts.heartbeats import HeartbeatStore
from pipeline.alerts.store import AlertStore
from pipeline.db.engine import create_db_engine
from pipeline.jobs.store import JobStore
from pipeline.mail import SmtpConfig
from pipeline.metrics import SchedulerMetrics
from pipeline.outages import describe_outage, is_outage
from pipeline.read.jobs import rollup_backlog
from pipeline.reconcile.store import DriftState, SummaryReconciler
from pipeline.reconcile.vocabulary import ReconcileMode
from pipeline.reports.daily import DailyReporter, DailyRun
from pipeline.reports.periods import parse_time_of_day
from pipeline.reports.store import EstateHoursStore
from pipeline.rollup.job import RollupJob, RollupRun
from pipeline.rollup.purge import TelemetryPurger
from pipeline.rollup.reader import TelemetryReader
from pipeline.settings import Settings
from pipeline.tsdb.influx import SyncInflux

__all__ = ["SchedulerJobs", "build_scheduler"]

log = logging.getLogger("sendense.scheduler")


class SchedulerJobs:
    """The jobs, each safe to run while other scheduler processes run them too.

    An outage stops a run quietly (one warning, the next run tries again); anything else is a bug
    and is logged with its traceback. Neither stops the scheduler.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = SchedulerMetrics()
        self.engine = create_db_engine(settings.mysql, pool_size=2)
        self.store = JobStore(self.engine)
        self.influx = SyncInflux(settings.influx)
        self.purger = TelemetryPurger(self.store, self.influx, settings.influx.summary_rp)
        self.estate_hours = EstateHoursStore(self.engine)
        r = settings.reports
        self.daily: DailyReporter | None = None
        if r.daily_recipients and settings.alerts.smtp_host:
            self.daily = DailyReporter(self.engine, SmtpConfig.from_settings(settings.alerts), r.daily_recipients,
                                       r.zone, parse_time_of_day(r.daily_time), settings.api.rpo_default,
                                       lease=r.daily_claim)  # fmt: skip
            self.metrics.watch("daily-report")
        elif r.daily_recipients:
            log.warning("SENDENSE_DAILY_REPORT_RECIPIENTS is set but SENDENSE_SMTP_HOST is not: no daily report")
        self.alert_store = AlertStore(self.engine)
        self.evaluator = AlertEvaluator(
            self.alert_store,
            HeartbeatStore(self.engine),
            settings.alerts,
            settings.api.rpo_default,
            influx_ok=self.influx.ping,
        )
        self.alertmanager: AlertmanagerChannel | None = None
        if settings.alerts.alertmanager_url:
            self.alertmanager = AlertmanagerChannel(settings.alerts, self.engine)
            self.metrics.watch("alertmanager-resend")
        a = settings.alerts
        # The Alertmanager channel is the re-post job's too: one instance, one HTTP client.
        prebuilt = {"alertmanager": OneAtATime(self.alertmanager)} if self.alertmanager is not None else {}
        self.sender = OutboxSender(
            self.alert_store,
            build_channels(a, prebuilt=prebuilt),
            RetryPolicy(a.retry_base, a.retry_max),
            # A run ends before the next one is due, so APScheduler never has to skip one.
            budget=max(0.1, 0.8 * a.deliver_interval),
            observe=self.metrics.delivered,
        )
        self.delivering: set[str] = set()
        self.wake_senders: Callable[[], None] | None = None
        self.reconciler = SummaryReconciler(
            self.engine,
            self.store,
            batch_size=settings.scheduler.reconcile_batch,
            overlap=settings.scheduler.reconcile_overlap,
        )
        self.rollup = RollupJob(
            self.store,
            TelemetryReader(self.influx, settings.influx.raw_rp),
            self.purger,
            settings.scheduler,
            on_rollup=self._observe_rollup,
        )

    def _observe_rollup(self, seconds: float, rolled_up: bool) -> None:
        self.metrics.rollups.labels("rolled_up" if rolled_up else "failed").inc()
        if rolled_up:
            self.metrics.rollup_seconds.observe(seconds)

    def _backlog(self) -> None:
        counts = rollup_backlog(self.engine)
        self.metrics.jobs_running.set(counts["running"])
        self.metrics.jobs_waiting.set(counts["waiting"])
        self.metrics.jobs_set_aside.set(counts["failed"])
        self.metrics.purge_backlog.set(counts["purge_backlog"])

    def _guard(self, name: str, func, empty):
        try:
            result = func()
        except Exception as exc:
            if is_outage(exc):
                log.warning("%s run stopped by an outage, next run retries: %s", name, describe_outage(exc))
                self.metrics.ran(name, "outage")
            else:
                log.exception("%s run failed", name)
                self.metrics.ran(name, "error")
            return empty
        self.metrics.ran(name, "ok")
        return result

    def roll_up(self) -> RollupRun:
        def run_and_count() -> RollupRun:
            run = self.rollup.run_once()
            self._backlog()
            return run

        run = self._guard("rollup", run_and_count, RollupRun())
        if run.stopped_by:
            log.warning("rollup run stopped by an outage after %d jobs: %s", run.rolled_up, run.stopped_by)
        return run

    def purge(self) -> int:
        return self._guard("purge", lambda: self.purger.retry_unfinished() + len(self.purger.sweep_leftovers()), 0)

    def reap(self) -> int:
        def reap() -> int:
            stale = self.store.reap(self.settings.scheduler.stale_after)
            for job_id in stale:
                log.warning("job %s marked failed: telemetry timeout", job_id)
            return len(stale)

        return self._guard("reaper", reap, 0)

    def reconcile(self, mode: ReconcileMode = "changed") -> int:
        """Recompute the summaries of machines whose jobs changed outside the job store (or all); returns
        the machines corrected."""

        def run() -> int:
            report = self.reconciler.run(mode)
            self.metrics.summary_drift.set(report.machines_corrected)
            self.metrics.summary_corrections.inc(report.corrections_total)
            self.metrics.jobs_changed_outside.set(DriftState(self.engine).read()["jobs_changed_outside"])
            return report.machines_corrected

        return self._guard("reconcile", run, 0)

    def evaluate_alerts(self) -> EvaluationRun:
        """Every alert rule, once, if no other scheduler is evaluating; changes and notifications committed together."""
        run = self._guard("alerts", self.evaluator.run_once, EvaluationRun())
        if run.notifications and self.wake_senders is not None:
            self.wake_senders()  # what was just enqueued goes now, not at the senders' next tick
        return run

    def notify(self, channel: str) -> SendRun:
        """Deliver the notifications due on `channel` (each channel is a job of its own: a slow receiver
        holds up only its own deliveries)."""

        def run() -> SendRun:
            self.delivering.add(channel)
            try:
                sent = self.sender.run_once(channel)
            finally:
                self.delivering.discard(channel)
            self.metrics.outbox_pending.set(self.alert_store.pending_notifications())
            return sent

        return self._guard("notify", run, SendRun(channel))

    def resend_alertmanager(self) -> int:
        """Post the firing alerts to Alertmanager again before they expire there; returns how many."""
        if self.alertmanager is None:
            return 0
        return self._guard("alertmanager-resend", self.alertmanager.resend, 0)

    def refresh_estate_hours(self) -> int:
        """Recompute the estate's per-hour summary where jobs changed; returns the hours recomputed."""
        return self._guard("estate-hours", lambda: self.estate_hours.refresh().hours, 0)

    def send_daily_report(self) -> DailyRun:
        """The previous day's report e-mail, if it is due and no scheduler has sent it (or is sending it)."""
        if self.daily is None:
            return DailyRun("not-due")
        return self._guard("daily-report", self.daily.run_once, DailyRun("failed"))

    def close(self) -> None:
        self.sender.close()  # every channel, the Alertmanager one included
        self.influx.close()
        self.engine.dispose()


def build_scheduler(settings: Settings) -> tuple[BlockingScheduler, SchedulerJobs]:
    """A blocking scheduler running rollup, purge, reaper, reconciles and alert jobs at their configured intervals
    (an interval of 0 turns a reconcile off; the Alertmanager re-post runs only when Alertmanager is configured)."""
    jobs = SchedulerJobs(settings)
    scheduler = BlockingScheduler(timezone=UTC)
    now = datetime.now(UTC)
    s = settings.scheduler
    resend = settings.alerts.alertmanager_resend if jobs.alertmanager is not None else 0
    # The full reconcile waits one interval: a scheduler restarting often must not sweep every machine each
    # time (the upgrade that added the marks marked every existing job, so the first `changed` run covers them).
    runs = [
        (jobs.reap, s.reaper_interval, "reaper", now),
        (jobs.roll_up, s.rollup_interval, "rollup", now),
        (jobs.purge, s.purge_interval, "purge", now),
        (jobs.reconcile, s.reconcile_interval, "reconcile", now),
        (jobs.evaluate_alerts, settings.alerts.evaluate_interval, "alerts", now),
        (jobs.refresh_estate_hours, settings.reports.hours_interval, "estate-hours", now),
        (jobs.resend_alertmanager, resend, "alertmanager-resend", now),
        # From the start: a day whose report time passed while no scheduler ran is caught up at once.
        (jobs.send_daily_report, settings.reports.daily_interval if jobs.daily else 0, "daily-report", now),
        (lambda: jobs.reconcile("all"), s.reconcile_full_interval, "reconcile-all", None),
    ]
    for channel in jobs.sender.channels:
        runs.append((lambda c=channel: jobs.notify(c), settings.alerts.deliver_interval, f"notify-{channel}", now))
    for func, seconds, name, first in runs:
        if seconds <= 0:
            continue
        scheduler.add_job(
            func,
            "interval",
            seconds=seconds,
            id=name,
            name=name,
            next_run_time=first or now + timedelta(seconds=seconds),
            max_instances=1,
            coalesce=True,
        )

    def wake_senders() -> None:
        # A sender still running will claim the new rows itself; waking it would only make APScheduler skip.
        for channel in set(jobs.sender.channels) - jobs.delivering:
            scheduler.modify_job(f"notify-{channel}", next_run_time=datetime.now(UTC))

    jobs.wake_senders = wake_senders if settings.alerts.deliver_interval > 0 else None
    return scheduler, jobs
