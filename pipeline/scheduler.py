"""build_scheduler(settings): the rollup, purge and reaper jobs in one APScheduler process."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler

from pipeline.db.engine import create_db_engine
from pipeline.rollup.job import RollupJob
from pipeline.rollup.purge import TelemetryPurger
from pipeline.rollup.reader import TelemetryReader
from pipeline.rollup.reaper import reap_stale_jobs
from pipeline.settings import Settings
from pipeline.tsdb.influx import SyncInflux

__all__ = ["SchedulerJobs", "build_scheduler"]

log = logging.getLogger("sendense.scheduler")


class SchedulerJobs:
    """The three jobs, each safe to run while other scheduler processes run them too."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_db_engine(settings.mysql, pool_size=2)
        self.influx = SyncInflux(settings.influx)
        self.purger = TelemetryPurger(self.engine, self.influx, settings.influx.summary_rp)
        self.rollup = RollupJob(
            self.engine,
            TelemetryReader(self.influx, settings.influx.raw_rp),
            self.purger,
            settings.scheduler,
        )

    def roll_up(self) -> int:
        try:
            return self.rollup.run_once()
        except Exception as exc:  # an outage: nothing was committed, the next run tries again
            log.warning("rollup run stopped: %s", exc)
            return 0

    def purge(self) -> int:
        try:
            return self.purger.retry_unfinished() + self.purger.sweep_leftovers()
        except Exception as exc:
            log.warning("purge run stopped: %s", exc)
            return 0

    def reap(self) -> int:
        try:
            return len(reap_stale_jobs(self.engine, self.settings.scheduler.stale_after))
        except Exception as exc:
            log.warning("reaper run stopped: %s", exc)
            return 0

    def close(self) -> None:
        self.influx.close()
        self.engine.dispose()


def build_scheduler(settings: Settings) -> tuple[BlockingScheduler, SchedulerJobs]:
    """A blocking scheduler running rollup, purge and reaper at their configured intervals."""
    jobs = SchedulerJobs(settings)
    scheduler = BlockingScheduler(timezone=UTC)
    now = datetime.now(UTC)
    s = settings.scheduler
    for func, seconds, name in (
        (jobs.reap, s.reaper_interval, "reaper"),
        (jobs.roll_up, s.rollup_interval, "rollup"),
        (jobs.purge, s.purge_interval, "purge"),
    ):
        scheduler.add_job(
            func, "interval", seconds=seconds, id=name, name=name, next_run_time=now, max_instances=1, coalesce=True
        )
    return scheduler, jobs
