"""The demo's alert scenarios on the real stack: staged through the API with short thresholds, rolled up by the
real rollup and judged by the real AlertEvaluator, every staged rule fires on its machine and the ones meant
to resolve resolve, each within a bound of the plan's own estimate."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

from sqlalchemy import select

from pipeline.agent.client import TelemetryClient
from pipeline.agent.scenario_steps import Scenario, SetRpo, Step
from pipeline.agent.scenarios import STAGED_RULES, Timings, plan_scenarios
from pipeline.agent.staging import ScenarioConfig, ScenarioReport, _Stager, run_scenarios
from pipeline.alerts.evaluator import AlertEvaluator
from pipeline.alerts.heartbeats import HeartbeatStore
from pipeline.alerts.store import AlertStore
from pipeline.db.tables import alert_transitions, alerts

# Thresholds of seconds, as the demo's are of a minute: stalled and pending after 9 s.
RULES = {"job_stalled": {"params": {"minutes": 0.15}}, "job_pending_too_long": {"params": {"minutes": 0.15}}}
SLACK = 20.0
"""Seconds a rule may fire or resolve after the plan's estimate (a loaded 2-core machine, one rollup and one
evaluation a second, each over every other test's machines too)."""


class Staging:
    """run_scenarios in a thread of its own, stopped from the test."""

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config
        self.log: list[str] = []
        self.report: ScenarioReport | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        self.report = await run_scenarios(self.config, stop=self._stop, progress=self.log.append)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> ScenarioReport:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert self.report is not None, "the scenarios did not stop"
        return self.report


def _transitions(engine, prefix: str) -> dict[tuple[str, str], list[str]]:
    """(rule, machine) -> the kinds of its alerts' transitions, in order."""
    query = (
        select(alerts.c.rule, alerts.c.vm_name, alert_transitions.c.kind)
        .join(alert_transitions, alert_transitions.c.alert_id == alerts.c.id)
        .where(alerts.c.vm_name.like(f"{prefix}-%"))
        .order_by(alert_transitions.c.id)
    )
    found: dict[tuple[str, str], list[str]] = {}
    with engine.connect() as conn:
        for rule, vm, kind in conn.execute(query):
            found.setdefault((rule, vm), []).append(kind)
    return found


def _severity(engine, rule: str, vm: str) -> str:
    with engine.connect() as conn:
        return conn.execute(select(alerts.c.severity).where(alerts.c.rule == rule, alerts.c.vm_name == vm)).scalar()


def test_every_staged_rule_fires_and_those_planned_to_resolve_do(api, stack, engine, settings, scheduler_jobs, unique):
    prefix = f"scn{unique}"
    timings = Timings.from_settings(
        RULES, 1.0, 1.0, settings.ingest.max_timestamp_age, show_for=4, live_run=3, quick_run=3, update_interval=1
    )
    plan = {s.rule: s for s in plan_scenarios(timings, prefix=prefix, tag="t")}
    evaluator = AlertEvaluator(
        AlertStore(engine),
        HeartbeatStore(engine),
        dataclasses.replace(settings.alerts, rules=RULES, hold_down=0.0, evaluate_interval=1.0),
        rpo_default=settings.api.rpo_default,
    )
    # Jobs and telemetry with the agent's token, the RPOs with the operator's.
    config = ScenarioConfig(api, stack.agent_token, stack.operator_token, timings, prefix, tag="t", poll_interval=0.5)
    staging = Staging(config)
    expected_fired = {(rule, s.vm_name) for rule, s in plan.items()}
    expected_resolved = {(rule, s.vm_name) for rule, s in plan.items() if s.resolves_after is not None}
    budget = max(s.resolves_after or s.fires_after for s in plan.values()) + 2 * SLACK
    fired_at: dict[tuple[str, str], float] = {}
    resolved_at: dict[tuple[str, str], float] = {}

    staging.start()
    start = time.monotonic()
    try:
        while time.monotonic() - start < budget:
            began = time.monotonic()
            scheduler_jobs.roll_up()
            evaluator.run_once()
            now = time.monotonic() - start
            for key, kinds in _transitions(engine, prefix).items():
                if "fired" in kinds:
                    fired_at.setdefault(key, now)
                if "resolved" in kinds:
                    resolved_at.setdefault(key, now)
            if expected_fired <= fired_at.keys() and expected_resolved <= resolved_at.keys():
                break
            time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
        critical = _severity(engine, "rpo", plan["rpo"].vm_name)
    finally:
        report = staging.stop()
    log = "\n".join(staging.log)
    assert not report.failed and not report.warnings, log
    assert report.finished == set(STAGED_RULES), log
    assert expected_fired <= fired_at.keys(), f"never fired: {expected_fired - fired_at.keys()}\n{log}"
    assert expected_resolved <= resolved_at.keys(), f"never resolved: {expected_resolved - resolved_at.keys()}\n{log}"
    for rule, scenario in plan.items():
        key = (rule, scenario.vm_name)
        assert fired_at[key] <= scenario.fires_after + SLACK, (rule, fired_at[key], scenario.fires_after)
        if scenario.resolves_after is not None:
            assert resolved_at[key] <= scenario.resolves_after + SLACK, (rule, resolved_at[key])
    # The staged machines fire nothing else, but the never-backed-up one's failure.
    others = set(_transitions(engine, prefix)) - expected_fired
    assert others == {("job_failed", plan["never_backed_up"].vm_name)}
    assert critical == "critical", "the past-RPO machine's short objective was set"
    # Stopped: the pending job is cancelled, so a demo run again starts without it.
    assert report.cancelled == [plan["job_pending_too_long"].job_ids[0]]
    evaluator.run_once()
    pending = _transitions(engine, prefix)[("job_pending_too_long", plan["job_pending_too_long"].vm_name)]
    assert pending == ["fired", "resolved"]


def test_without_an_operator_token_the_rpo_is_refused_and_the_scenario_goes_on_saying_so(api, stack, agent, unique):
    """The agent token may not set an RPO (an operator's write): a warning, not a stopped scenario."""
    vm = f"scn{unique}-past-rpo"
    assert agent.post("/backups", json={"vm_name": vm, "backup_type": "full", "repository_id": "r"}).status_code == 201
    scenario = Scenario("rpo", vm, "an RPO set with the wrong token", (Step(0.0, SetRpo(vm, 60)),), 0.0)

    async def stage() -> ScenarioReport:
        report, said = ScenarioReport(), []
        async with TelemetryClient(api, stack.agent_token) as client:
            await _Stager(ScenarioConfig(api), client, client, report, asyncio.Event(), said.append).run(scenario)
        return report

    report = asyncio.run(stage())
    assert report.finished == {"rpo"} and not report.failed
    assert report.warnings and "403" in report.warnings[0] and "--operator-token" in report.warnings[0]
    assert agent.get(f"/machines/{vm}").json()["rpo"]["rpo_source"] == "default"
