"""Fault experiments on real processes: agents that count what was acknowledged, and what kills them.

Shared by the fault tests (`tests/faults/`, short) and `bench/faults.py` (full length). Every agent
owns one job and sends single updates stamped with unique timestamps, sending each one again until
it is acknowledged (a 2xx), as a real agent keeps data it was refused. Afterwards the timestamps
InfluxDB holds for each job are compared with the acknowledged ones: any acknowledged timestamp
missing is a lost point.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import bindparam, select

from pipeline.db.tables import backup_jobs
from pipeline.tsdb.influx import SyncInflux
from tests.support.devstack import DevStack, wait_until_live

__all__ = [
    "Agent",
    "AgentFleet",
    "FleetReport",
    "KilledProcess",
    "Outcome",
    "api_kill_experiment",
    "found_timestamps",
    "influx_outage_experiment",
    "kill_at_random",
    "loss_report",
    "mysql_outage_experiment",
    "rolled_up_counts",
    "scheduler_kill_experiment",
]

UPDATE_STEP_NS = 1_000_000  # 1 ms between two updates' timestamps: unique, and in time order


@dataclass
class Agent:
    """One backup agent: one job, updates with unique timestamps, each sent until acknowledged."""

    job_id: str
    vm_name: str
    base_ns: int
    acked: set[int] = field(default_factory=set)
    statuses: Counter = field(default_factory=Counter)
    connection_errors: int = 0
    created: bool = False
    finished: str | None = None
    last_acked_seq: int = -1
    seq: int = 0

    def body(self, seq: int, status: str = "running") -> dict:
        stamp = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=(self.base_ns + seq * UPDATE_STEP_NS) // 1000)
        return {
            "bytes_transferred": seq * 1000,
            "total_bytes": 10_000_000,
            "transfer_speed_bps": 1_000_000 + (seq % 13) * 10_000,
            "progress_percent": min(99.0, seq / 100),
            "current_phase": "transferring",
            "status": status,
            "timestamp": stamp.isoformat(),
        }

    def stamp_ns(self, seq: int) -> int:
        return self.base_ns + seq * UPDATE_STEP_NS


@dataclass
class FleetReport:
    """What the agents saw: acknowledged updates, and every answer by status."""

    agents: list[Agent]

    @property
    def acknowledged(self) -> int:
        return sum(len(a.acked) for a in self.agents)

    @property
    def statuses(self) -> Counter:
        total: Counter = Counter()
        for agent in self.agents:
            total.update(agent.statuses)
        return total

    @property
    def connection_errors(self) -> int:
        return sum(a.connection_errors for a in self.agents)


class AgentFleet:
    """`count` agents sending to `api_url` until stopped, then finishing their jobs."""

    def __init__(
        self,
        api_url: str,
        token: str,
        prefix: str,
        count: int,
        *,
        interval: float = 0.02,
        retry_pause: float = 0.1,
        terminal_status: Callable[[int], str] = lambda n: "completed",
    ) -> None:
        self.api_url = api_url
        self.headers = {"Authorization": f"Bearer {token}"}
        # Ten minutes back (room for many updates before "now"), in whole microseconds like the API's times.
        base = (time.time_ns() - 600 * 10**9) // 1000 * 1000
        self.agents = [
            Agent(f"{prefix}-{n:03d}", f"{prefix}-vm-{n % 7}", base + n * 10**9 // count // 1000 * 1000)
            for n in range(count)
        ]
        self.interval = interval
        self.retry_pause = retry_pause
        self.terminal_status = terminal_status
        self.stop = asyncio.Event()

    async def run(self, *, finish: bool = True) -> FleetReport:
        limits = httpx.Limits(max_connections=len(self.agents) + 4)
        async with httpx.AsyncClient(base_url=self.api_url, headers=self.headers, timeout=30, limits=limits) as c:
            await asyncio.gather(*(self._agent(c, n, agent, finish) for n, agent in enumerate(self.agents)))
        return FleetReport(self.agents)

    async def _send(self, client: httpx.AsyncClient, agent: Agent, method: str, path: str, body: dict) -> int:
        """Send until the API gives a final answer; returns its status. Connection errors, 502 and
        503 mean "not acknowledged": the same body (same timestamp) goes again."""
        while True:
            try:
                response = await client.request(method, path, json=body)
            except httpx.HTTPError:
                agent.connection_errors += 1
                await asyncio.sleep(self.retry_pause)
                continue
            agent.statuses[response.status_code] += 1
            if response.status_code in (502, 503, 504):
                await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 1.0) * self.retry_pause * 5)
                continue
            return response.status_code

    async def _agent(self, client: httpx.AsyncClient, n: int, agent: Agent, finish: bool) -> None:
        body = {"vm_name": agent.vm_name, "backup_type": "full", "repository_id": "fault-repo"}
        status = await self._send(client, agent, "POST", "/api/v1/backups", {**body, "backup_id": agent.job_id})
        # 409: a 201 lost on the way (the process died after committing): the job exists.
        assert status in (201, 409), f"creating {agent.job_id}: {status}"
        agent.created = True
        path = f"/api/v1/telemetry/backup/{agent.job_id}"
        while not self.stop.is_set():
            agent.seq += 1
            status = await self._send(client, agent, "POST", path, agent.body(agent.seq))
            if status == 202:
                agent.acked.add(agent.stamp_ns(agent.seq))
                agent.last_acked_seq = agent.seq
            await asyncio.sleep(self.interval)
        if finish:
            final = self.terminal_status(n)
            agent.seq += 1
            status = await self._send(client, agent, "POST", path, agent.body(agent.seq, final))
            if status == 200:
                agent.acked.add(agent.stamp_ns(agent.seq))
                agent.last_acked_seq = agent.seq
                agent.finished = final


def found_timestamps(influx: SyncInflux, job_id: str) -> set[int]:
    """The timestamps (epoch ns) of the job-level points InfluxDB holds for `job_id`."""
    results = influx.query(
        "SELECT bytes_transferred FROM job_telemetry WHERE job_id = $job_id AND disk_index = ''",
        {"job_id": job_id},
        epoch="ns",
    )
    series = results[0].get("series") if results else None
    return {int(row[0]) for row in series[0]["values"]} if series else set()


def loss_report(influx: SyncInflux, agents: list[Agent]) -> tuple[int, int, dict[str, int]]:
    """(acknowledged, found of those, {job_id: missing}) over every agent's job."""
    acknowledged = found = 0
    missing: dict[str, int] = {}
    for agent in agents:
        there = found_timestamps(influx, agent.job_id)
        acknowledged += len(agent.acked)
        found += len(agent.acked & there)
        lost = len(agent.acked - there)
        if lost:
            missing[agent.job_id] = lost
    return acknowledged, found, missing


def rolled_up_counts(engine, job_ids: list[str]) -> dict[str, int | None]:
    """snapshots_recorded of each job's summary (None while not rolled up)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(backup_jobs.c.id, backup_jobs.c.performance_metrics).where(
                backup_jobs.c.id.in_(bindparam("ids", expanding=True))
            ),
            {"ids": job_ids},
        ).all()
    return {
        r.id: (r.performance_metrics or {}).get("snapshots_recorded") if r.performance_metrics else None for r in rows
    }


class KilledProcess:
    """A `sendense` process in a process group of its own, killed with SIGKILL (the whole group: granian's
    workers too) and started again, as a crash and a supervisor's restart would."""

    def __init__(
        self, stack: DevStack, *args: str, log_path: Path, env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        self.stack = stack
        self.args = args
        self.log_path = log_path
        self.env = env
        self.port = port
        self.kills = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = self.stack.start_process(*self.args, log_path=self.log_path, env=self.env, own_group=True)
        if self.port is not None:
            wait_until_live(f"http://127.0.0.1:{self.port}/api/v1/health/live", 30.0, self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):  # already dead: a crash of its own
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            DevStack.stop_process(self.proc)


async def kill_at_random(
    targets: list[KilledProcess],
    kills: int,
    rng: random.Random,
    *,
    gap: tuple[float, float],
    downtime: tuple[float, float] = (0.0, 0.5),
) -> None:
    """Kill a random target `kills` times at random moments, restarting it after a random downtime."""
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(*gap))
        target = rng.choice(targets)
        await asyncio.to_thread(target.kill)
        await asyncio.sleep(rng.uniform(*downtime))
        await asyncio.to_thread(target.start)


# --- the experiments ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one experiment measured: acknowledged against found, and what else the checks saw."""

    name: str
    acknowledged: int = 0
    found: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)
    connection_errors: int = 0
    kills: int = 0
    problems: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.acknowledged - self.found

    def check(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


def _measure(outcome: Outcome, influx: SyncInflux, report: FleetReport) -> None:
    outcome.acknowledged, outcome.found, outcome.missing = loss_report(influx, report.agents)
    outcome.statuses = report.statuses
    outcome.connection_errors = report.connection_errors


def _rolled_up_with_every_point(outcome: Outcome, engine, agents: list[Agent]) -> None:
    counts = rolled_up_counts(engine, [a.job_id for a in agents])
    wrong = {a.job_id: (counts.get(a.job_id), len(a.acked)) for a in agents if counts.get(a.job_id) != len(a.acked)}
    outcome.figures["jobs rolled up with all their points"] = f"{len(agents) - len(wrong)} of {len(agents)}"
    outcome.check(not wrong, f"jobs not rolled up with every acknowledged point: {dict(list(wrong.items())[:5])}")


def api_kill_experiment(
    stack: DevStack,
    influx: SyncInflux,
    engine,
    roll_up: Callable[[], object],
    *,
    prefix: str,
    agents: int,
    kills: int,
    gap: tuple[float, float],
    log_dir: Path,
    port: int,
    seed: int,
) -> Outcome:
    """`kills` times kill -9 the API (its whole process group) at random moments under `agents` agents."""
    outcome = Outcome(f"API kill -9 x{kills} under {agents} agents")
    api = KilledProcess(stack, "api", "--port", str(port), log_path=log_dir / f"{prefix}-api.log", port=port)
    api.start()
    fleet = AgentFleet(f"http://127.0.0.1:{port}", stack.agent_token, prefix, agents)
    rng = random.Random(seed)

    async def run() -> FleetReport:
        agents_task = asyncio.create_task(fleet.run())
        await kill_at_random([api], kills, rng, gap=gap)
        await asyncio.sleep(gap[0])
        fleet.stop.set()
        return await agents_task

    try:
        report = asyncio.run(run())
    finally:
        api.stop()
    outcome.kills = api.kills
    _measure(outcome, influx, report)
    outcome.check(outcome.connection_errors > 0, "no request was cut by a kill: the kills hit nothing")
    outcome.check(all(a.finished == "completed" for a in report.agents), "not every job was finished")
    roll_up()
    _rolled_up_with_every_point(outcome, engine, report.agents)
    return outcome


def influx_outage_experiment(
    stack: DevStack,
    influx: SyncInflux,
    engine,
    roll_up: Callable[[], object],
    *,
    prefix: str,
    agents: int,
    outage: float,
    log_dir: Path,
    port: int,
    seed: int,
) -> Outcome:
    """InfluxDB stopped for `outage` s under ingest; the API is killed -9 during the outage; both restart."""
    outcome = Outcome(f"InfluxDB stopped {outage:.0f} s, API kill -9 during it, {agents} agents")
    api = KilledProcess(stack, "api", "--port", str(port), log_path=log_dir / f"{prefix}-api.log", port=port)
    api.start()
    fleet = AgentFleet(f"http://127.0.0.1:{port}", stack.agent_token, prefix, agents)
    rng = random.Random(seed)

    async def run() -> FleetReport:
        agents_task = asyncio.create_task(fleet.run())
        await asyncio.sleep(2.0)
        await asyncio.to_thread(stack.stop_influx)
        started = time.monotonic()
        await asyncio.sleep(rng.uniform(0.2, 0.6) * outage)
        await asyncio.to_thread(api.kill)
        await asyncio.to_thread(api.start)
        await asyncio.sleep(max(0.0, outage - (time.monotonic() - started)))
        await asyncio.to_thread(stack.start_influx)
        outcome.figures["outage (s)"] = round(time.monotonic() - started, 1)
        await asyncio.sleep(3.0)
        fleet.stop.set()
        return await agents_task

    try:
        report = asyncio.run(run())
    finally:
        api.stop()
        if not stack.server_running("influxdb.sh"):
            stack.start_influx()
    outcome.kills = api.kills
    _measure(outcome, influx, report)
    outcome.check(outcome.statuses[503] > 0, "no update was refused during the outage")
    outcome.check(all(a.finished == "completed" for a in report.agents), "not every job was finished")
    roll_up()
    _rolled_up_with_every_point(outcome, engine, report.agents)
    return outcome


def mysql_outage_experiment(
    stack: DevStack,
    influx: SyncInflux,
    engine,
    *,
    prefix: str,
    agents: int,
    outage: float,
    log_dir: Path,
    port: int,
    rollup_timeout: float = 120.0,
) -> Outcome:
    """MariaDB stopped for `outage` s while agents stream, create jobs and finish them; a real scheduler
    process runs throughout and must roll every job up afterwards on its own."""
    outcome = Outcome(f"MariaDB stopped {outage:.0f} s, {agents} agents (half start during it)")
    api = KilledProcess(stack, "api", "--port", str(port), log_path=log_dir / f"{prefix}-api.log", port=port)
    api.start()
    scheduler = KilledProcess(
        stack,
        "scheduler",
        log_path=log_dir / f"{prefix}-scheduler.log",
        env={"SENDENSE_ROLLUP_INTERVAL": "0.5", "SENDENSE_PURGE_INTERVAL": "1", "SENDENSE_REAPER_INTERVAL": "3600"},
    )
    scheduler.start()
    url = f"http://127.0.0.1:{port}"
    early = AgentFleet(url, stack.agent_token, f"{prefix}-a", agents - agents // 2,
                       terminal_status=lambda n: "failed" if n % 3 == 0 else "completed")  # fmt: skip
    late = AgentFleet(url, stack.agent_token, f"{prefix}-b", agents // 2)

    async def run() -> list[FleetReport]:
        early_task = asyncio.create_task(early.run())
        await asyncio.sleep(2.0)
        await asyncio.to_thread(stack.stop_mysql)
        started = time.monotonic()
        # Jobs created, and jobs finished, while the database is down: all of it must wait for it.
        late_task = asyncio.create_task(late.run())
        await asyncio.sleep(outage / 2)
        early.stop.set()
        await asyncio.sleep(max(0.0, outage - (time.monotonic() - started)))
        await asyncio.to_thread(stack.start_mysql)
        outcome.figures["outage (s)"] = round(time.monotonic() - started, 1)
        await asyncio.sleep(3.0)
        late.stop.set()
        return [await early_task, await late_task]

    try:
        reports = asyncio.run(run())
        everyone = [a for r in reports for a in r.agents]
        deadline = time.monotonic() + rollup_timeout
        while time.monotonic() < deadline:
            counts = rolled_up_counts(engine, [a.job_id for a in everyone])
            if all(counts.get(a.job_id) is not None for a in everyone):
                break
            time.sleep(0.5)
        outcome.figures["scheduler process survived"] = scheduler.proc is not None and scheduler.proc.poll() is None
    finally:
        api.stop()
        scheduler.stop()
        if not stack.server_running("mariadb.sh"):
            stack.start_mysql()
    report = FleetReport(everyone)
    # The scheduler has rolled the jobs up and purged their points by now: what arrived is what each
    # summary counted. (Every update is sent until acknowledged with the same timestamp, so no point
    # exists that was not acknowledged, and equal counts mean equal sets.)
    counts = rolled_up_counts(engine, [a.job_id for a in everyone])
    outcome.acknowledged = report.acknowledged
    outcome.found = sum(min(counts.get(a.job_id) or 0, len(a.acked)) for a in everyone)
    outcome.missing = {a.job_id: len(a.acked) - (counts.get(a.job_id) or 0) for a in everyone
                       if (counts.get(a.job_id) or 0) < len(a.acked)}  # fmt: skip
    outcome.statuses = report.statuses
    outcome.connection_errors = report.connection_errors
    unexpected = {s: n for s, n in outcome.statuses.items() if s not in (200, 201, 202, 409, 503)}
    outcome.check(not unexpected, f"answers other than 2xx, 409 (a lost 201) and 503: {unexpected}")
    outcome.check(outcome.statuses[503] > 0, "nothing was refused during the outage")
    _states_kept(outcome, engine, everyone)
    _rolled_up_with_every_point(outcome, engine, everyone)
    return outcome


def _states_kept(outcome: Outcome, engine, agents: list[Agent]) -> None:
    """Every acknowledged job state is in backup_jobs: the job exists, ended as acknowledged, with the
    values of its last acknowledged update."""
    with engine.connect() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                select(backup_jobs).where(backup_jobs.c.id.in_(bindparam("ids", expanding=True))),
                {"ids": [a.job_id for a in agents]},
            )
        }
    wrong = []
    for agent in agents:
        row = rows.get(agent.job_id)
        if row is None or row.status != agent.finished or row.bytes_transferred != agent.last_acked_seq * 1000:
            wrong.append((agent.job_id, None if row is None else (row.status, row.bytes_transferred), agent.finished))
    outcome.figures["acknowledged job states kept"] = f"{len(agents) - len(wrong)} of {len(agents)}"
    outcome.check(not wrong, f"acknowledged states lost: {wrong[:5]}")


def scheduler_kill_experiment(
    stack: DevStack,
    influx: SyncInflux,
    engine,
    *,
    api_url: str,
    prefix: str,
    jobs: int,
    points: int,
    schedulers: int,
    kills: int,
    gap: tuple[float, float],
    log_dir: Path,
    seed: int,
    timeout: float = 180.0,
) -> Outcome:
    """`jobs` finished jobs of `points` points each; `schedulers` scheduler processes roll them up while
    one of them, chosen at random, is killed -9 `kills` times at random moments and restarted."""
    outcome = Outcome(f"scheduler kill -9 x{kills}, {schedulers} schedulers, {jobs} jobs of {points} points")
    job_ids = _finished_jobs(api_url, stack.agent_token, prefix, jobs, points)
    env = {"SENDENSE_ROLLUP_INTERVAL": "0.2", "SENDENSE_ROLLUP_BATCH": "2", "SENDENSE_PURGE_INTERVAL": "0.5"}
    procs = [
        KilledProcess(stack, "scheduler", log_path=log_dir / f"{prefix}-scheduler-{k}.log", env=env)
        for k in range(schedulers)
    ]
    for proc in procs:
        proc.start()
    rng = random.Random(seed)
    started = time.monotonic()

    async def run() -> None:
        await kill_at_random(procs, kills, rng, gap=gap, downtime=(0.0, 0.3))

    try:
        asyncio.run(run())
        while time.monotonic() - started < timeout and not _all_purged(engine, job_ids):
            time.sleep(0.2)
        outcome.figures["seconds until every job was rolled up and purged"] = round(time.monotonic() - started, 1)
    finally:
        for proc in procs:
            proc.stop()
    outcome.kills = sum(p.kills for p in procs)
    counts = rolled_up_counts(engine, job_ids)
    outcome.acknowledged = jobs * points
    outcome.found = sum(n or 0 for n in counts.values())
    wrong = {j: n for j, n in counts.items() if n != points}
    outcome.check(not wrong, f"summaries without every point (a series dropped before its summary?): {wrong}")
    leftovers = [j for j in job_ids if _series(influx, j)]
    outcome.figures["series left"] = len(leftovers)
    outcome.check(not leftovers, f"series left after the purge: {leftovers[:5]}")
    summaries = {j: _summary_points(influx, j) for j in job_ids}
    outcome.check(all(n == 1 for n in summaries.values()), f"job_summary points per job: {Counter(summaries.values())}")
    logged = Counter()
    for proc in procs:
        logged.update(j for j in _rolled_up_ids(proc.log_path) if j.startswith(prefix))
    twice = {j: n for j, n in logged.items() if n > 1}
    outcome.figures["rollups logged (one per job at most)"] = sum(logged.values())
    outcome.check(not twice, f"jobs rolled up more than once: {twice}")
    return outcome


def _finished_jobs(api_url: str, token: str, prefix: str, jobs: int, points: int) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    base = (time.time_ns() - 3600 * 10**9) // 1000 * 1000
    job_ids = []
    with httpx.Client(base_url=f"{api_url}/api/v1", headers=headers, timeout=120) as client:
        for n in range(jobs):
            body = {"vm_name": f"{prefix}-vm-{n % 5}", "backup_type": "full", "repository_id": "fault-repo",
                    "backup_id": f"{prefix}-{n:03d}"}  # fmt: skip
            assert client.post("/backups", json=body).status_code == 201
            job_ids.append(body["backup_id"])
        agents = [Agent(j, "", base + n * 10**6) for n, j in enumerate(job_ids)]
        updates = [
            {"job_type": "backup", "job_id": a.job_id, **a.body(seq)} for a in agents for seq in range(1, points)
        ]
        for start in range(0, len(updates), 10_000):
            answer = client.post("/telemetry/batch", json={"updates": updates[start : start + 10_000]})
            assert answer.status_code == 202 and not answer.json()["rejected"], answer.text[:300]
        for a in agents:
            assert client.post(f"/telemetry/backup/{a.job_id}", json=a.body(points, "completed")).status_code == 200
    return job_ids


def _all_purged(engine, job_ids: list[str]) -> bool:
    with engine.connect() as conn:
        rows = conn.execute(
            select(backup_jobs.c.purged_at).where(backup_jobs.c.id.in_(bindparam("ids", expanding=True))),
            {"ids": job_ids},
        ).all()
    return len(rows) == len(job_ids) and all(r.purged_at is not None for r in rows)


def _series(influx: SyncInflux, job_id: str) -> int:
    results = influx.query('SHOW SERIES FROM "job_telemetry" WHERE job_id = $job_id', {"job_id": job_id})
    return sum(len(s.get("values", [])) for r in results for s in r.get("series", []))


def _summary_points(influx: SyncInflux, job_id: str) -> int:
    rp = influx.settings.summary_rp
    results = influx.query(
        f'SELECT count(duration_seconds) FROM "{rp}"."job_summary" WHERE job_id = $job_id', {"job_id": job_id}
    )
    series = results[0].get("series") if results else None
    return int(series[0]["values"][0][1]) if series else 0


def _rolled_up_ids(log_path: Path) -> list[str]:
    if not log_path.exists():
        return []
    return re.findall(r"rolled up (\S+) \(", log_path.read_text(errors="replace"))
