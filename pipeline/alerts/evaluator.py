"""AlertEvaluator: one run of every rule, under the evaluation claim, and its changes committed with it."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.alerts import facts, rules
from pipeline.alerts.heartbeats import HeartbeatStore
from pipeline.alerts.lifecycle import plan_lifecycle
from pipeline.alerts.rules import HealthFacts
from pipeline.alerts.store import AlertStore
from pipeline.alerts.vocabulary import Condition
from pipeline.settings import AlertSettings

__all__ = ["AlertEvaluator", "EvaluationRun"]

log = logging.getLogger(__name__)

# A job that ended just before the previous run's start may commit just after it: look back this much more.
_OVERLAP = timedelta(seconds=60)
# The first evaluation (no watermark yet) looks at jobs that ended in the last day.
_FIRST_LOOK_BACK = timedelta(days=1)
_JOB_RULES = ("job_overrunning", "job_stalled", "job_pending_too_long")
_PAIR_RULES = ("job_failed", "job_anomalous")


@dataclass
class EvaluationRun:
    """What one run did (`claimed` False: another scheduler was evaluating)."""

    claimed: bool = False
    evaluated: int = 0
    changes: int = 0
    notifications: int = 0


class AlertEvaluator:
    def __init__(
        self,
        store: AlertStore,
        heartbeats: HeartbeatStore,
        settings: AlertSettings,
        rpo_default: int,
        influx_ok: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.heartbeats = heartbeats
        self.settings = settings
        self.rpo_default = rpo_default
        self.influx_ok = influx_ok
        self.process = f"scheduler:{socket.gethostname()}:{os.getpid()}"
        self._influx_failing_since: datetime | None = None
        self.usual = facts.UsualDurations()

    def _beat(self, now: datetime) -> None:
        """The scheduler's own view of InfluxDB, for the pipeline_unhealthy rule."""
        if self.influx_ok is None:
            return
        ok = self.influx_ok()
        if ok:
            self._influx_failing_since = None
        elif self._influx_failing_since is None:
            self._influx_failing_since = now
        self.heartbeats.beat(
            self.process,
            influx_failing_since=self._influx_failing_since,
            detail=None if ok else "the scheduler gets no answer from InfluxDB's /ping",
        )

    def run_once(self) -> EvaluationRun:
        configs = self.store.rule_configs(self.settings.rules)
        run = EvaluationRun()
        with self.store.claim_evaluation() as claim:
            if claim is None:
                return run
            run.claimed = True
            now, conn = claim.now, claim.conn
            self._beat(now)
            evaluated: dict[str, Condition | None] = {}
            known = facts.machines(conn, self.rpo_default)
            evaluated |= rules.rpo(known, configs, now)
            evaluated |= rules.never_backed_up(known, configs, now)

            open_alerts = claim.open_alerts()
            runs = int(configs("job_overrunning", None).params.get("runs", 10))
            jobs = facts.running_jobs(conn, now, runs, self.usual)
            for rule in (rules.job_overrunning, rules.job_stalled, rules.job_pending_too_long):
                evaluated |= rule(jobs, configs, now)
            live = {j.job_id for j in jobs}
            for a in open_alerts:  # an open alert of a job that is no longer running or pending is clear
                if a.rule in _JOB_RULES and a.job_id not in live:
                    evaluated[a.key] = None

            since = (claim.watermark - _OVERLAP) if claim.watermark else now - _FIRST_LOOK_BACK
            pairs = facts.touched_pairs(conn, since)
            pairs |= {(a.vm_name, a.job_type) for a in open_alerts if a.rule in _PAIR_RULES and a.vm_name}
            finished = facts.finished_pairs(conn, pairs)
            evaluated |= rules.job_failed(finished, configs)
            evaluated |= rules.job_anomalous(finished, configs)

            aside = facts.set_aside(conn)
            evaluated |= rules.rollup_set_aside(aside, configs)
            for a in open_alerts:
                if a.rule == "rollup_set_aside" and a.key not in evaluated:
                    evaluated[a.key] = None

            since_failing, details = self.heartbeats.failing_since(now)
            evaluated |= rules.pipeline_unhealthy(HealthFacts(since_failing, details), configs, now)

            firing = [k for k, c in evaluated.items() if c is not None]
            stored = claim.stored(firing)
            plan = plan_lifecycle(stored, evaluated, claim.silences(), now, timedelta(seconds=self.settings.hold_down))
            run.notifications = claim.apply(plan, self.settings.channels(), configs, self.settings.dashboard_url)
            claim.finish(now)
            run.evaluated, run.changes = len(evaluated), len(plan.changes)
        if run.notifications:
            log.info("alerts: %d changes, %d notifications enqueued", run.changes, run.notifications)
        return run
