"""Stages the demo's alert scenarios (pipeline/agent/scenarios.py) through the API, beside the random simulator.

Each scenario runs its steps in order, on its own task: one waiting for a rollup holds up no other. Once
all are staged it waits for `stop` (a pending job must stay pending), then cancels every job it left
unfinished, so a demo run again starts clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pipeline.agent.client import ApiError, TelemetryClient
from pipeline.agent.scenario_steps import Action, AwaitRollup, CreateJob, Scenario, SendBatch, SendUpdate, SetRpo
from pipeline.agent.scenarios import SCENARIO_PREFIX, Timings, plan_scenarios

__all__ = ["ScenarioConfig", "ScenarioReport", "run_scenarios"]

CANCEL_TIMEOUT = 5.0
"""Seconds a stopping run spends telling the API about one unfinished job."""


@dataclass
class ScenarioConfig:
    """Where the API is, with which tokens, and how long the staged conditions last."""

    api_url: str = "http://127.0.0.1:8082"
    token: str | None = None
    """An agent token: jobs and telemetry."""
    operator_token: str | None = None
    """For PUT /machines/{vm}/rpo, an operator's write; None: the agent token, which an API with tokens
    refuses for it (403: the scenario goes on with the default objective, and says so)."""
    timings: Timings = field(default_factory=Timings)
    prefix: str = SCENARIO_PREFIX
    tag: str | None = None
    """Part of every job id (None: a new one per run, as job ids must not repeat)."""
    rollup_timeout: float = 300.0
    poll_interval: float = 1.0


@dataclass
class ScenarioReport:
    """What a run staged: per rule, the steps done and the error that stopped it, if one did."""

    steps_done: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    """Jobs left unfinished and cancelled at the stop (the pending one, or any cut short)."""
    finished: set[str] = field(default_factory=set)
    """Rules whose every step was done."""


class _Stopped(Exception):
    """The run was told to stop while a scenario waited."""


def _stamp(age: float) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=age)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _pause(delay: float, stop: asyncio.Event) -> None:
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
    if stop.is_set():
        raise _Stopped


class _Stager:
    def __init__(
        self,
        config: ScenarioConfig,
        agent: TelemetryClient,
        operator: TelemetryClient,
        report: ScenarioReport,
        stop: asyncio.Event,
        say: Callable[[str], None],
    ) -> None:
        self.config, self.agent, self.operator = config, agent, operator
        self.report, self.stop, self.say = report, stop, say
        self.unfinished: dict[str, dict] = {}  # job id -> its last update, created and not ended yet

    async def run(self, scenario: Scenario) -> None:
        rule = scenario.rule
        self.report.steps_done[rule] = 0
        try:
            for step in scenario.steps:
                await _pause(step.delay, self.stop)
                await self._do(scenario, step.action)
                self.report.steps_done[rule] += 1
                if step.note:
                    self.say(f"[{rule}] {scenario.vm_name}: {step.note}")
        except _Stopped:
            return
        except ApiError as exc:
            self.report.failed[rule] = str(exc)
            self.say(f"[{rule}] {scenario.vm_name}: stopped, the API refused a step: {exc}")
            return
        except Exception as exc:  # a side show of the demo: one broken scenario must not stop the others
            self.report.failed[rule] = repr(exc)
            self.say(f"[{rule}] {scenario.vm_name}: stopped by {exc!r}")
            return
        self.report.finished.add(rule)

    async def _do(self, scenario: Scenario, action: Action) -> None:
        if isinstance(action, CreateJob):
            await self.agent.create_backup(**action.body())
            self.unfinished[action.job_id] = {}
        elif isinstance(action, SendUpdate):
            await self.agent.send_update("backup", action.job_id, {**action.body, "timestamp": _stamp(action.age)})
            if action.terminal:
                self.unfinished.pop(action.job_id, None)
            else:
                self.unfinished[action.job_id] = dict(action.body)
        elif isinstance(action, SendBatch):
            entries = [{"job_type": "backup", "job_id": u.job_id, **u.body, "timestamp": _stamp(u.age)}
                       for u in action.updates]  # fmt: skip
            result = await self.agent.send_batch(entries)
            if result.get("rejected"):
                raise ApiError(None, f"the updates of {action.job_id} were refused: {result['rejected']}")
            self.unfinished.pop(action.job_id, None)
        elif isinstance(action, SetRpo):
            await self._set_rpo(scenario, action)
        elif isinstance(action, AwaitRollup):
            await self._await_rollup(action.job_ids)

    async def _set_rpo(self, scenario: Scenario, action: SetRpo) -> None:
        try:
            await self.operator.set_rpo(action.vm_name, action.rpo_seconds)
        except ApiError as exc:
            if exc.status not in (401, 403):
                raise
            # Not fatal: the rule still fires with the default objective (later, or only on a first run).
            warning = (
                f"[{scenario.rule}] {scenario.vm_name}: the RPO was not set ({exc.status}); give the "
                "scenarios an operator token (sendense scenarios --operator-token)"
            )
            self.report.warnings.append(warning)
            self.say(warning)

    async def _await_rollup(self, job_ids: tuple[str, ...]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.rollup_timeout
        waiting = list(job_ids)
        while waiting:
            job = await self.agent.get_backup(waiting[0])
            if (job.get("rollup") or {}).get("state") == "done":
                waiting.pop(0)
                continue
            if loop.time() > deadline:
                raise ApiError(
                    None,
                    f"{waiting[0]} was not rolled up within {self.config.rollup_timeout:.0f} s; "
                    "is `sendense scheduler` running?",
                )
            await _pause(self.config.poll_interval, self.stop)

    async def cancel_unfinished(self) -> None:
        for job_id, last in list(self.unfinished.items()):
            update = {
                "bytes_transferred": 0,
                "total_bytes": 0,
                "progress_percent": 0.0,
                "current_phase": "snapshot",
                **last,
                "transfer_speed_bps": 0,
                "status": "cancelled",
                "error_message": "demo scenarios stopped",
                "timestamp": _stamp(0),
            }
            try:
                await asyncio.wait_for(self.agent.send_update("backup", job_id, update), CANCEL_TIMEOUT)
            except (ApiError, TimeoutError) as exc:
                self.say(f"could not cancel {job_id}: {exc}")
                continue
            self.report.cancelled.append(job_id)


async def run_scenarios(
    config: ScenarioConfig,
    *,
    stop: asyncio.Event | None = None,
    progress: Callable[[str], None] | None = None,
) -> ScenarioReport:
    """Stage every scenario, then wait for `stop`; returns what was done once stopped."""
    stop = stop or asyncio.Event()
    say = progress or (lambda _message: None)
    report = ScenarioReport()
    tag = config.tag or secrets.token_hex(3)
    plan = plan_scenarios(config.timings, prefix=config.prefix, tag=tag)
    for s in plan:
        resolves = f", resolves after ~{s.resolves_after:.0f} s" if s.resolves_after is not None else ", stays firing"
        say(f"staging {s.rule} on {s.vm_name!r}: {s.story} (fires after ~{s.fires_after:.0f} s{resolves})")
    operator_token = config.operator_token or config.token
    async with (
        TelemetryClient(config.api_url, config.token) as agent,
        TelemetryClient(config.api_url, operator_token) as operator,
    ):
        stager = _Stager(config, agent, operator, report, stop, say)
        tasks = [asyncio.create_task(stager.run(s)) for s in plan]
        try:
            await asyncio.gather(*tasks)
            if not stop.is_set():
                say(f"every scenario staged ({len(report.finished)} of {len(plan)} completely); waiting for the stop")
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await stager.cancel_unfinished()
    return report
