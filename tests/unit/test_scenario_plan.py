"""The demo's alert scenarios as planned: the plan replayed second by second as the server would store it,
each moment judged by the real rule functions, fires every staged rule on its machine and resolves those
meant to resolve. tests/integration/test_demo_scenarios.py runs the same plan against the real stack."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest

from pipeline.agent.client import TelemetryClient
from pipeline.agent.scenario_steps import AwaitRollup, CreateJob, Scenario, SendBatch, SendUpdate, SetRpo
from pipeline.agent.scenarios import (
    NOT_STAGED,
    STAGED_RULES,
    Timings,
    demo_alert_environment,
    plan_scenarios,
)
from pipeline.agent.simulator import SimulatorConfig, SimulatorReport, _poll_pending
from pipeline.alerts import rules
from pipeline.alerts.vocabulary import DEFAULT_RULES, RULES
from pipeline.insight.anomaly import RunFigures, detect_anomalies
from pipeline.read.jobs import duration_seconds

BASE = datetime(2026, 1, 1, tzinfo=UTC)
DEMO_RULES = {"job_stalled": {"params": {"minutes": 1}}, "job_pending_too_long": {"params": {"minutes": 1}}}
TIMINGS = Timings.from_settings(DEMO_RULES, evaluate_interval=5, rollup_interval=10, max_timestamp_age=7 * 86400)
DEFAULT_RPO = 86_400
JOB_ID = re.compile(r"[A-Za-z0-9._-]{1,255}")


# --- a replay of the plan, as the job store would record it -------------------------------------------


@dataclass
class Job:
    job_id: str
    vm_name: str
    backup_type: str
    created: float
    updates: list[tuple[float, float, dict]] = field(default_factory=list)
    """(sent, stamped, body), in seconds after the start: the server's clock and the agent's."""

    def heard(self, at: float) -> list[tuple[float, float, dict]]:
        return [u for u in self.updates if u[0] <= at]

    def status(self, at: float) -> str:
        heard = self.heard(at)
        return heard[-1][2]["status"] if heard else "pending"

    def ended(self) -> tuple[float, float] | None:
        """(sent, stamped) of its terminal update."""
        final = [u for u in self.updates if u[2]["status"] != "running"]
        return (final[0][0], final[0][1]) if final else None

    def span(self) -> float:
        return self.updates[-1][1] - self.updates[0][1]


class Replay:
    """A scenario's steps on a virtual clock; the scheduler rolls a completed job up one rollup interval
    after its end, and an AwaitRollup waits for that."""

    def __init__(self, scenario: Scenario, timings: Timings, configured: dict = DEMO_RULES) -> None:
        self.configs = lambda rule, _vm: DEFAULT_RULES[rule].merged(configured.get(rule))
        self.jobs: dict[str, Job] = {}
        self.rpo: list[tuple[float, int | None]] = []
        clock = 0.0
        for step in scenario.steps:
            clock += step.delay
            action = step.action
            if isinstance(action, CreateJob):
                self.jobs[action.job_id] = Job(action.job_id, action.vm_name, action.backup_type, clock)
            elif isinstance(action, SendUpdate | SendBatch):
                sent = action.updates if isinstance(action, SendBatch) else (action,)
                self.jobs[action.job_id].updates += [(clock, clock - u.age, dict(u.body)) for u in sent]
            elif isinstance(action, SetRpo):
                self.rpo.append((clock, action.rpo_seconds))
            elif isinstance(action, AwaitRollup):
                clock = max([clock, *(self.rolled_up_at(self.jobs[j]) for j in action.job_ids)])
        self.end = clock
        self.rollup_interval = timings.rollup_interval

    def rolled_up_at(self, job: Job) -> float:
        ended = job.ended()
        assert ended is not None, f"{job.job_id} is awaited but never ends"
        return ended[0] + TIMINGS.rollup_interval

    def _at(self, seconds: float) -> datetime:
        return BASE + timedelta(seconds=seconds)

    def _completed(self, vm: str, at: float, backup_type: str | None = None) -> list[Job]:
        """Its completed jobs by then, newest created first."""
        done = [j for j in self.jobs.values() if j.vm_name == vm and j.status(at) == "completed"]
        return sorted((j for j in done if backup_type in (None, j.backup_type)), key=_created, reverse=True)

    def _anomalies(self, job: Job, at: float) -> list[dict]:
        def figures(j: Job) -> RunFigures:
            total = float(j.updates[-1][2]["bytes_transferred"])
            return RunFigures(j.span(), total, total / j.span())

        previous = [j for j in self._completed(job.vm_name, at, job.backup_type)
                    if j.created < job.created and self.rolled_up_at(j) <= self.rolled_up_at(job)]  # fmt: skip
        return [a.as_dict() for a in detect_anomalies(figures(job), [figures(j) for j in previous])]

    def conditions(self, at: float) -> dict[str, rules.Condition | None]:
        now, configs = self._at(at), self.configs
        found: dict[str, rules.Condition | None] = {}
        for vm in {j.vm_name for j in self.jobs.values() if j.created <= at}:
            jobs = sorted((j for j in self.jobs.values() if j.vm_name == vm and j.created <= at), key=_created)
            rpo = next((s for t, s in reversed(self.rpo) if t <= at), None) or DEFAULT_RPO
            successes = [j.ended()[1] for j in self._completed(vm, at)]
            last_success = self._at(max(successes)) if successes else None
            machine = rules.MachineFacts(vm, rpo, last_success, self._at(jobs[0].created))
            found |= rules.rpo([machine], configs, now) | rules.never_backed_up([machine], configs, now)
            finished = [j for j in reversed(jobs) if j.status(at) in ("completed", "failed")]
            if finished:
                newest = next((j for j in finished if j.status(at) == "completed"), None)
                rolled = newest is not None and self.rolled_up_at(newest) <= at
                failures = next((i for i, j in enumerate(finished) if j.status(at) != "failed"), len(finished))
                pair = rules.FinishedPair(vm, "backup", finished[0].job_id, finished[0].status(at), None, failures,
                                          self._anomalies(newest, at) if rolled else (),
                                          newest.job_id if rolled else None)  # fmt: skip
                found |= rules.job_failed([pair], configs) | rules.job_anomalous([pair], configs)
            live = [self._running(j, at) for j in jobs if j.status(at) in ("pending", "running")]
            for rule in (rules.job_overrunning, rules.job_stalled, rules.job_pending_too_long):
                found |= rule(live, configs, now)
        return found

    def _running(self, job: Job, at: float) -> rules.RunningJob:
        heard = job.heard(at)
        advanced = [sent for k, (sent, _, body) in enumerate(heard)
                    if k == 0 or body["bytes_transferred"] > heard[k - 1][2]["bytes_transferred"]]  # fmt: skip
        row = SimpleNamespace(
            status=job.status(at),
            created_at=self._at(job.created),
            started_at=self._at(heard[0][1]) if heard else None,
            completed_at=None,
            last_telemetry_at=self._at(heard[-1][1]) if heard else None,
            last_seen_at=self._at(heard[-1][0]) if heard else None,
        )
        usual = [j.span() for j in self._completed(job.vm_name, at, job.backup_type)]
        return rules.RunningJob(
            job.job_id, job.vm_name, "backup", job.backup_type, row.status, row.created_at,
            duration_seconds(row, self._at(at)) if heard else None, row.last_seen_at,
            self._at(advanced[-1]) if advanced else None, usual,
        )  # fmt: skip


def _created(job: Job) -> float:
    return job.created


def _history(replay: Replay, until: float) -> dict[float, dict[str, rules.Condition]]:
    """What fires at each second (one evaluation a second: later than that it can only be seen later)."""
    return {
        float(t): {k: c for k, c in replay.conditions(float(t)).items() if c is not None}
        for t in range(0, int(until) + 1)
    }


PLAN = plan_scenarios(TIMINGS, tag="t1")


# --- the plan -----------------------------------------------------------------------------------------


def test_every_rule_is_staged_once_but_the_two_about_the_pipeline_itself():
    assert sorted(s.rule for s in PLAN) == sorted(STAGED_RULES)
    assert set(STAGED_RULES) | set(NOT_STAGED) == set(RULES) and not set(STAGED_RULES) & set(NOT_STAGED)
    assert len({s.vm_name for s in PLAN}) == len(PLAN), "one machine per scenario"


def test_job_ids_are_valid_unique_and_carry_the_prefix_and_the_runs_tag():
    plan = plan_scenarios(TIMINGS, prefix="scn", tag="a1b2c3")
    ids = [job_id for s in plan for job_id in s.job_ids]
    assert len(ids) == len(set(ids))
    assert all(JOB_ID.fullmatch(i) and i.startswith("scn-a1b2c3-") for i in ids)
    assert all(s.vm_name.startswith("scn-") for s in plan)
    # Machines are the same whatever the run: a demo run again adds none.
    assert [s.vm_name for s in plan] == [s.vm_name for s in plan_scenarios(TIMINGS, prefix="scn", tag="other")]


@pytest.mark.parametrize("scenario", PLAN, ids=lambda s: s.rule)
def test_each_job_is_created_first_stamped_in_order_and_ended_at_most_once_last(scenario):
    replay = Replay(scenario, TIMINGS)
    for job in replay.jobs.values():
        assert all(sent >= job.created for sent, _, _ in job.updates)
        stamps = [stamp for _, stamp, _ in job.updates]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), job.job_id
        # The API takes timestamps up to 7 days old (SENDENSE_MAX_TIMESTAMP_AGE) and 300 s ahead.
        assert all(sent - stamp < 7 * 86400 - 600 and stamp <= sent for sent, stamp, _ in job.updates)
        terminal = [k for k, (_, _, body) in enumerate(job.updates) if body["status"] != "running"]
        assert terminal in ([], [len(job.updates) - 1]), job.job_id
        # A stalled job is still heard from well within the threshold.
        gaps = [b[0] - a[0] for a, b in zip(job.updates, job.updates[1:], strict=False)]
        assert all(gap <= TIMINGS.stalled_after / 4 for gap in gaps), job.job_id
    unfinished = [j.job_id for j in replay.jobs.values() if j.ended() is None]
    assert unfinished == ([scenario.job_ids[0]] if scenario.rule == "job_pending_too_long" else [])


def test_backfilled_runs_go_from_pending_to_their_end_in_one_request():
    """Never seen running: the evaluator would keep the machine's usual durations without them for minutes."""
    batches = [step.action for s in PLAN for step in s.steps if isinstance(step.action, SendBatch)]
    assert len(batches) == 1 + (4 + 1) + (6 + 1 + 1)  # past-RPO, overrunning, anomalous
    assert all(b.updates[-1].terminal and not any(u.terminal for u in b.updates[:-1]) for b in batches)
    batched = {b.job_id for b in batches}
    alone = {step.action.job_id for s in PLAN for step in s.steps if isinstance(step.action, SendUpdate)}
    assert not batched & alone


# --- the replay ---------------------------------------------------------------------------------------

# A machine may show a second rule: the never-backed-up one's only backup fails (job_failed too).
ALSO = {"never_backed_up": {"job_failed"}}


@pytest.mark.parametrize("scenario", PLAN, ids=lambda s: s.rule)
def test_the_staged_rule_fires_by_its_estimate_and_resolves_when_planned(scenario):
    replay = Replay(scenario, TIMINGS)
    history = _history(replay, replay.end + 60)
    mine = {t: {c.rule for c in found.values()} for t, found in history.items()}
    firing = [t for t, found in mine.items() if scenario.rule in found]
    assert firing, f"{scenario.rule} never fires"
    assert firing[0] <= scenario.fires_after, "it fires later than the plan says"
    assert set().union(*mine.values()) == {scenario.rule} | ALSO.get(scenario.rule, set())
    if scenario.resolves_after is None:
        assert firing[-1] == replay.end + 60, "it stays firing"
        return
    # Seen by at least two evaluations before it resolves, clear from the planned time on, and the plan's
    # estimate no more pessimistic than its guess of the rollups (two intervals each, one here) explains.
    assert sum(1 for t in firing if t < scenario.resolves_after) >= 2 * TIMINGS.evaluate_interval
    assert firing[-1] < scenario.resolves_after <= firing[-1] + 4 * TIMINGS.rollup_interval + TIMINGS.seen


def test_the_replay_is_a_real_check_a_stall_shorter_than_the_threshold_fires_nothing():
    (scenario,) = [s for s in PLAN if s.rule == "job_stalled"]
    replay = Replay(scenario, TIMINGS, configured={"job_stalled": {"params": {"minutes": 10}}})
    assert not any(c.rule == "job_stalled" for found in _history(replay, replay.end).values() for c in found.values())


def test_the_past_rpo_machine_is_critical_with_its_short_objective_and_a_warning_without():
    (scenario,) = [s for s in PLAN if s.rule == "rpo"]
    replay = Replay(scenario, TIMINGS)
    assert replay.conditions(1.0)[f"rpo:{scenario.vm_name}"].severity == "critical"
    replay.rpo.clear()  # the operator's write refused: the default objective, a day, against 30 h
    assert replay.conditions(1.0)[f"rpo:{scenario.vm_name}"].severity == "warning"


def test_the_anomalous_run_is_flagged_for_its_size_and_duration_and_the_next_usual_one_is_not():
    (scenario,) = [s for s in PLAN if s.rule == "job_anomalous"]
    replay = Replay(scenario, TIMINGS)
    big, after = replay.jobs[scenario.job_ids[-2]], replay.jobs[scenario.job_ids[-1]]
    flagged = replay._anomalies(big, replay.end)
    assert {a["metric"] for a in flagged} == {"duration_seconds", "bytes_transferred"}
    assert all(a["ratio"] == pytest.approx(3.0, rel=0.05) for a in flagged)
    assert replay._anomalies(after, replay.end) == []


# --- timings and the demo's environment ---------------------------------------------------------------


def test_timings_follow_the_configured_thresholds_and_the_oldest_timestamp_accepted():
    t = Timings.from_settings({"job_stalled": {"params": {"minutes": 0.5}}}, 2, 1, 6 * 3600)
    assert (t.stalled_after, t.pending_after, t.overrun_factor) == (30.0, 1800.0, 2.0)
    assert t.update_interval == 5.0 and t.update_interval <= t.stalled_after / 4
    assert t.rpo_age == t.history_span == 6 * 3600 - 600
    assert Timings.from_settings({}, 2, 1, 7 * 86400).rpo_age == 30 * 3600
    quick = Timings.from_settings({"job_stalled": {"params": {"minutes": 0.1}}}, 1, 1, 7 * 86400)
    assert quick.update_interval == pytest.approx(1.5), "updates come often enough for a 6 s threshold"
    with pytest.raises(ValueError, match="below stalled_after"):
        Timings(stalled_after=5, update_interval=5)


def test_the_demo_shortens_the_defaults_and_says_so():
    shortened = demo_alert_environment(15.0, 300.0, {})
    assert shortened.variables["SENDENSE_ALERT_INTERVAL"] == "5"
    assert shortened.variables["SENDENSE_ALERT_HOLD_DOWN"] == "30"
    assert json.loads(shortened.variables["SENDENSE_ALERT_RULES"]) == DEMO_RULES
    assert len(shortened.lines) == 4 and any("default 10 min" in line for line in shortened.lines)
    # What the demo's processes then read is what the plan was checked with above.
    timings = Timings.from_settings(json.loads(shortened.variables["SENDENSE_ALERT_RULES"]), 5, 10, 7 * 86400)
    assert timings == TIMINGS


def test_the_demo_keeps_the_users_own_alert_settings():
    shortened = demo_alert_environment(60.0, 300.0, {"job_stalled": {"enabled": False}})
    assert "SENDENSE_ALERT_INTERVAL" not in shortened.variables
    assert json.loads(shortened.variables["SENDENSE_ALERT_RULES"]) == {
        "job_stalled": {"enabled": False},
        "job_pending_too_long": {"params": {"minutes": 1}},
    }
    assert "SENDENSE_ALERT_RULES" not in demo_alert_environment(15.0, 300.0, DEMO_RULES).variables


# --- the random simulator leaves the scenarios' pending jobs alone -----------------------------------


async def test_the_simulator_does_not_pick_up_pending_jobs_with_a_left_alone_prefix():
    import asyncio

    pending = [{"backup_id": "scenario-x-pending-1", "vm_name": "a"}, {"backup_id": "job-2", "vm_name": "b"}]
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, json={"backups": pending, "total": 2}))
    config = SimulatorConfig(pending_poll_interval=0.01, leave_pending=("scenario-",))
    queue: asyncio.Queue = asyncio.Queue()
    stop = asyncio.Event()
    async with TelemetryClient("http://api", transport=transport) as client:
        poller = asyncio.create_task(_poll_pending(client, config, set(), queue, SimulatorReport(), stop, print))
        await asyncio.sleep(0.05)
        stop.set()
        await poller
    assert [queue.get_nowait()["backup_id"] for _ in range(queue.qsize())] == ["job-2"]
