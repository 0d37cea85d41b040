"""The demo's alert scenarios, planned: what to send so that every staged alert rule fires within minutes.

Pure: `plan_scenarios(timings)` lists, per rule, the jobs to create and the updates to send, each after a
delay (the steps: `scenario_steps.py`); `staging.py` sends them through the API, and nothing else writes:
the alerts come from the scheduler's own evaluation of what the API stored. `demo_alert_environment()` is
what the demo shortens so that the thresholds pass in minutes. `rollup_set_aside` and `pipeline_unhealthy`
are not staged: they need a rollup that keeps failing or a store down, which a demo should not cause.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pipeline.agent.scenario_steps import AwaitRollup, CreateJob, Scenario, SetRpo, Step, backfilled_run, live_run
from pipeline.alerts.vocabulary import DEFAULT_RULES

__all__ = [
    "NOT_STAGED",
    "SCENARIO_PREFIX",
    "STAGED_RULES",
    "DemoAlertEnvironment",
    "Timings",
    "demo_alert_environment",
    "plan_scenarios",
    "staging_schedule",
]

SCENARIO_PREFIX = "scenario"
"""Start of the scenarios' job ids and machine names (the demo's random simulator leaves such jobs alone)."""
STAGED_RULES = ("job_failed", "rpo", "job_stalled", "job_overrunning", "job_pending_too_long", "job_anomalous",
                "never_backed_up")  # fmt: skip
NOT_STAGED = ("rollup_set_aside", "pipeline_unhealthy")
GIB = 2**30
_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Timings:
    """How long each staged condition lasts, from the thresholds of the rules it must pass (seconds)."""

    evaluate_interval: float = 15.0
    """SENDENSE_ALERT_INTERVAL: a condition is seen within one evaluation."""
    rollup_interval: float = 10.0
    """SENDENSE_ROLLUP_INTERVAL: a run's anomaly flags exist once it is rolled up."""
    stalled_after: float = 600.0
    """job_stalled `minutes`, in seconds."""
    pending_after: float = 1800.0
    """job_pending_too_long `minutes`, in seconds."""
    overrun_factor: float = 2.0
    overrun_min_runs: int = 3
    update_interval: float = 5.0
    """Seconds between a live job's updates (below `stalled_after`: a stalled job still reports)."""
    show_for: float = 60.0
    """How long a condition stays before the recovery that resolves it."""
    live_run: float = 20.0
    """Length of a short live run (the failures, the recoveries)."""
    quick_run: float = 40.0
    """The overrunning machine's usual duration (its backfilled runs; alert texts round to minutes)."""
    rpo_age: float = 30 * _HOUR
    """Age of the past-RPO machine's backfilled success (the default RPO is a day)."""
    rpo_objective: int = 60
    """RPO the past-RPO machine is given while staged (an operator's write), so that it also fires when the
    demo runs again less than a day after its previous success; back to the default after the recovery."""
    never_backed_up_rpo: int = 60
    """RPO of the never-backed-up machine (the API's minimum)."""
    history_span: float = 8 * _HOUR
    """How far back the backfilled runs go (less than SENDENSE_MAX_TIMESTAMP_AGE)."""

    def __post_init__(self) -> None:
        if not 0 < self.update_interval < self.stalled_after:
            raise ValueError("update_interval must be positive and below stalled_after (a stalled job still reports)")
        if min(self.evaluate_interval, self.rollup_interval, self.live_run, self.quick_run, self.show_for) <= 0:
            raise ValueError("intervals and run lengths must be positive")
        if self.overrun_factor <= 1 or self.overrun_min_runs < 1:
            raise ValueError("overrun_factor must be above 1 and overrun_min_runs at least 1")
        if self.history_span < 10 * self.quick_run or self.rpo_age <= 0:
            raise ValueError("history_span and rpo_age must leave room for the backfilled runs")

    @classmethod
    def from_settings(
        cls,
        rules: Mapping[str, dict],
        evaluate_interval: float,
        rollup_interval: float,
        max_timestamp_age: float,
        **overrides: float,
    ) -> Timings:
        """The timings for the rules' thresholds as configured (SENDENSE_ALERT_RULES over the defaults);
        backfilled runs stay younger than the oldest timestamp the API accepts."""
        params = {rule: DEFAULT_RULES[rule].merged(rules.get(rule)).params for rule in DEFAULT_RULES}
        oldest = max_timestamp_age - 600.0  # a backfill is sent a little after it is planned
        values: dict = {
            "evaluate_interval": evaluate_interval,
            "rollup_interval": rollup_interval,
            "stalled_after": float(params["job_stalled"]["minutes"]) * 60,
            "pending_after": float(params["job_pending_too_long"]["minutes"]) * 60,
            "overrun_factor": float(params["job_overrunning"]["factor"]),
            "overrun_min_runs": int(params["job_overrunning"]["min_runs"]),
            "rpo_age": min(30 * _HOUR, oldest),
            "history_span": min(8 * _HOUR, oldest),
            **overrides,
        }
        # A stalled job must be heard from well within the threshold, however short it is configured.
        values["update_interval"] = min(float(values.get("update_interval", 5.0)), values["stalled_after"] / 4)
        return cls(**values)

    @property
    def seen(self) -> float:
        """Time from a condition holding to an evaluation having seen it, with a margin."""
        return self.evaluate_interval + 2.0


JobIds = Callable[[str], str]


def plan_scenarios(timings: Timings, *, prefix: str = SCENARIO_PREFIX, tag: str = "demo") -> list[Scenario]:
    """One scenario per staged rule. Job ids `{prefix}-{tag}-…` (new per run); machines `{prefix}-…`, the
    same every run, so that running the demo again adds no machines."""
    count = iter(range(1, 10_000))

    def job(slug: str) -> str:
        return f"{prefix}-{tag}-{slug}-{next(count)}"

    t = timings
    return [
        _failed(t, job, f"{prefix}-failed-then-fixed"),
        _past_rpo(t, job, f"{prefix}-past-rpo"),
        _stalled(t, job, f"{prefix}-stalled"),
        _overrunning(t, job, f"{prefix}-overrunning"),
        _pending(t, job, f"{prefix}-pending"),
        _anomalous(t, job, f"{prefix}-anomalous"),
        _never_backed_up(t, job, f"{prefix}-never-backed-up"),
    ]


def staging_schedule(timings: Timings) -> tuple[float, float]:
    """Seconds after the start by which every staged rule fires, and by which those meant to resolve have."""
    plan = plan_scenarios(timings)
    return max(s.fires_after for s in plan), max(s.resolves_after or 0.0 for s in plan)


def _failed(t: Timings, job: JobIds, vm: str) -> Scenario:
    first, second = job("failed"), job("fixed")
    error = "staged failure: the snapshot could not be created (VSS writer timed out)"
    steps = [
        Step(0.0, CreateJob(first, vm)),
        *live_run(first, t.update_interval, [(0, 0.0), (t.live_run, 0.6)], 4 * GIB, status="failed", error=error,
                  note="it failed: job_failed fires at the next evaluation"),
        Step(t.seen + t.show_for, CreateJob(second, vm)),
        *live_run(second, t.update_interval, [(0, 0.0), (t.live_run, 1.0)], 4 * GIB,
                  note="a later backup completed: job_failed resolves"),
    ]  # fmt: skip
    fired = t.live_run + t.seen
    return Scenario("job_failed", vm, "a backup fails, a later one completes", tuple(steps), fired,
                    fired + t.show_for + t.live_run)  # fmt: skip


def _past_rpo(t: Timings, job: JobIds, vm: str) -> Scenario:
    old, fresh = job("old"), job("fresh")
    hours = f"{t.rpo_age / _HOUR:.0f} h"
    steps = [
        Step(0.0, CreateJob(old, vm)),
        *backfilled_run(old, t.rpo_age, 60.0, 2 * GIB),
        Step(0.0, SetRpo(vm, t.rpo_objective), f"its last success is {hours} old, its RPO {t.rpo_objective} s: "
             "rpo fires, critical (past 2x)"),
        Step(t.seen + t.show_for, CreateJob(fresh, vm)),
        *live_run(fresh, t.update_interval, [(0, 0.0), (t.live_run, 1.0)], 2 * GIB,
                  note="a fresh success: rpo resolves"),
        Step(0.0, SetRpo(vm, None), "its RPO is back to the default"),
    ]  # fmt: skip
    return Scenario("rpo", vm, f"the last success is {hours} old, then a fresh one arrives", tuple(steps), t.seen,
                    t.seen + t.show_for + t.live_run)  # fmt: skip


def _stalled(t: Timings, job: JobIds, vm: str) -> Scenario:
    stuck = job("stalled")
    moving = max(3 * t.update_interval, 10.0)
    flat = t.stalled_after + t.seen + t.show_for
    marks = [(0, 0.0), (moving, 0.3), (moving + flat, 0.3), (moving + flat + 2 * moving, 1.0)]
    steps = [Step(0.0, CreateJob(stuck, vm)), *live_run(stuck, t.update_interval, marks, 6 * GIB, note="it completed")]
    story = f"a backup reports every {t.update_interval:g} s but moves no byte for {flat:.0f} s, then goes on"
    return Scenario("job_stalled", vm, story, tuple(steps), moving + t.stalled_after + t.seen,
                    moving + flat + t.update_interval + t.seen)  # fmt: skip


def _overrunning(t: Timings, job: JobIds, vm: str) -> Scenario:
    usual = [job("usual") for _ in range(max(t.overrun_min_runs, 3) + 1)]
    steps: list[Step] = []
    for n, job_id in enumerate(usual):
        ended = t.history_span * (len(usual) - n) / (len(usual) + 1)
        steps += [Step(0.0, CreateJob(job_id, vm)), *backfilled_run(job_id, ended, t.quick_run, 1 * GIB)]
    slow, again = job("slow"), job("usual")
    over = t.overrun_factor * t.quick_run
    length = over + t.seen + t.show_for
    steps += [
        Step(0.0, CreateJob(slow, vm), f"{len(usual)} runs of {t.quick_run:g} s backfilled; a slow one starts"),
        *live_run(slow, t.update_interval, [(0, 0.0), (length, 1.0)], 1 * GIB, note="the slow run completed"),
        # A usual run after the slow one: on a later demo the slow runs would otherwise stay the newest anomaly.
        Step(0.0, CreateJob(again, vm)),
        *backfilled_run(again, 1.0, t.quick_run, 1 * GIB, "a usual run again"),
    ]
    story = f"usually {t.quick_run:g} s, a run goes on past {over:g} s"
    return Scenario("job_overrunning", vm, story, tuple(steps), over + t.seen, length + t.seen)


def _pending(t: Timings, job: JobIds, vm: str) -> Scenario:
    note = "created; it gets no telemetry (cancelled when the scenarios stop)"
    steps = (Step(0.0, CreateJob(job("pending"), vm), note),)
    return Scenario("job_pending_too_long", vm, "a job is created and never starts", steps, t.pending_after + t.seen)


def _anomalous(t: Timings, job: JobIds, vm: str) -> Scenario:
    size, speed = 8 * GIB, 200 * 2**20
    # Alike, not equal (the anomaly test measures their spread): each within 3 % of the usual size.
    factors = (1.0, 1.03, 0.97, 1.02, 0.98, 1.01)
    baseline = [job("usual") for _ in factors]
    steps: list[Step] = []
    for n, (job_id, factor) in enumerate(zip(baseline, factors, strict=True)):
        total, ended = round(size * factor), t.history_span * (len(factors) + 1 - n) / (len(factors) + 2)
        steps += [Step(0.0, CreateJob(job_id, vm)), *backfilled_run(job_id, ended, total / speed, total)]
    big, normal = job("big"), job("usual")
    steps += [
        # The big run must be compared with rolled-up runs only: it is created once they are.
        Step(0.0, AwaitRollup(tuple(baseline)), f"{len(baseline)} similar runs rolled up"),
        Step(0.0, CreateJob(big, vm)),
        *backfilled_run(big, t.history_span / (len(factors) + 2), 3 * size / speed, 3 * size),
        Step(0.0, AwaitRollup((big,)), "a run 3x as big and as long rolled up: job_anomalous fires"),
        Step(t.seen + t.show_for, CreateJob(normal, vm)),
        *backfilled_run(normal, 1.0, size / speed, size, "a usual run again: job_anomalous resolves"),
    ]
    fired = 4 * t.rollup_interval + t.seen
    story = "after six similar runs, one three times as big and as long"
    return Scenario("job_anomalous", vm, story, tuple(steps), fired, fired + t.show_for)


def _never_backed_up(t: Timings, job: JobIds, vm: str) -> Scenario:
    only = job("never")
    machine = {"cpu_count": 4, "memory_mb": 8192, "os_type": "windows-server-2022", "protection_flow": "daily-backup"}
    error = "staged failure: the source datastore is unreachable"
    steps = [
        Step(0.0, CreateJob(only, vm, "full", machine)),
        Step(0.0, SetRpo(vm, t.never_backed_up_rpo), f"registered, its RPO {t.never_backed_up_rpo} s"),
        *live_run(only, t.update_interval, [(0, 0.0), (t.live_run, 0.2)], 20 * GIB, status="failed", error=error,
                  note="its only backup failed: never_backed_up fires once its RPO has passed"),
    ]  # fmt: skip
    fires = max(float(t.never_backed_up_rpo), t.live_run) + t.seen
    return Scenario("never_backed_up", vm, "a machine is registered and its only backup fails", tuple(steps), fires)


# --- the demo's thresholds ---------------------------------------------------------------------------

DEMO_ALERT_SETTINGS = {"SENDENSE_ALERT_INTERVAL": (5.0, 15.0), "SENDENSE_ALERT_HOLD_DOWN": (30.0, 300.0)}
"""variable -> (the demo's value, the default), in seconds."""
DEMO_RULE_MINUTES = {"job_stalled": 1, "job_pending_too_long": 1}
"""Rules whose `minutes` the demo shortens (defaults 10 and 30)."""


@dataclass(frozen=True)
class DemoAlertEnvironment:
    """The variables the demo sets for its processes, and one line per shortened setting to print."""

    variables: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def demo_alert_environment(
    evaluate_interval: float, hold_down: float, rules: Mapping[str, dict]
) -> DemoAlertEnvironment:
    """Shorter alert thresholds for the demo where the settings (`settings.alerts`) have the defaults: an
    interval or hold-down of its own, or a rule named in SENDENSE_ALERT_RULES, is kept as it is."""
    out = DemoAlertEnvironment()
    current = {"SENDENSE_ALERT_INTERVAL": evaluate_interval, "SENDENSE_ALERT_HOLD_DOWN": hold_down}
    for name, (value, default) in DEMO_ALERT_SETTINGS.items():
        if current[name] == default:
            out.variables[name] = f"{value:g}"
            out.lines.append(f"{name}={value:g} s (default {default:g} s)")
    added = {rule: {"params": {"minutes": m}} for rule, m in DEMO_RULE_MINUTES.items() if rule not in rules}
    for rule in added:
        default = DEFAULT_RULES[rule].params["minutes"]
        out.lines.append(
            f"{rule} after {DEMO_RULE_MINUTES[rule]} min (in SENDENSE_ALERT_RULES; default {default:g} min)"
        )
    if added:
        out.variables["SENDENSE_ALERT_RULES"] = json.dumps({**rules, **added})
    return out
