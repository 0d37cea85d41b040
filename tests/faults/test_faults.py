"""The fault suite, short enough for CI: real processes killed with SIGKILL, real servers stopped mid-stream.

Each experiment counts what was acknowledged against what arrived; `bench/faults.py` runs the same
experiments at full length. The seed of every random schedule is printed, so a failure can be replayed.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import pytest
from sqlalchemy import select

from pipeline.agent.simulator import SimulatorConfig, SimulatorReport, run_simulator
from pipeline.db.tables import backup_jobs
from tests.conftest import OUTPUT_DIR
from tests.support.faults import (
    Outcome,
    api_kill_experiment,
    found_timestamps,
    influx_outage_experiment,
    mysql_outage_experiment,
    scheduler_kill_experiment,
)


@pytest.fixture
def seed() -> int:
    value = random.SystemRandom().randrange(2**32)
    print(f"fault schedule seed: {value}")
    return value


def _assert_nothing_lost(outcome: Outcome) -> None:
    print(f"{outcome.name}: acknowledged {outcome.acknowledged}, found {outcome.found}, {outcome.figures}")
    assert outcome.missing == {}, f"acknowledged points missing per job: {outcome.missing}"
    assert outcome.found == outcome.acknowledged > 0
    assert 500 not in outcome.statuses, outcome.statuses
    assert not outcome.problems, outcome.problems


def test_api_killed_at_random_moments_loses_no_acknowledged_point(stack, influx, engine, scheduler_jobs, unique, seed):
    outcome = api_kill_experiment(
        stack, influx, engine, scheduler_jobs.roll_up, prefix=f"fault-kill-{unique}", agents=10, kills=5,
        gap=(1.0, 2.0), log_dir=OUTPUT_DIR, port=stack.api_port + 20, seed=seed,
    )  # fmt: skip
    assert outcome.kills == 5
    _assert_nothing_lost(outcome)


def test_influxdb_outage_with_an_api_kill_loses_nothing_and_every_job_rolls_up(
    stack, influx, engine, scheduler_jobs, unique, seed
):
    outcome = influx_outage_experiment(
        stack, influx, engine, scheduler_jobs.roll_up, prefix=f"fault-influx-{unique}", agents=10, outage=10.0,
        log_dir=OUTPUT_DIR, port=stack.api_port + 21, seed=seed,
    )  # fmt: skip
    assert outcome.kills == 1
    _assert_nothing_lost(outcome)


def test_mysql_outage_answers_only_503_and_every_job_rolls_up_afterwards(stack, influx, engine, unique):
    outcome = mysql_outage_experiment(
        stack, influx, engine, prefix=f"fault-mysql-{unique}", agents=10, outage=10.0, log_dir=OUTPUT_DIR,
        port=stack.api_port + 22,
    )  # fmt: skip
    _assert_nothing_lost(outcome)


def test_schedulers_killed_at_random_roll_each_job_up_exactly_once(stack, api, influx, engine, unique, seed):
    outcome = scheduler_kill_experiment(
        stack, influx, engine, api_url=api, prefix=f"fault-sched-{unique}", jobs=40, points=1000, schedulers=3,
        kills=10, gap=(0.1, 0.6), log_dir=OUTPUT_DIR, seed=seed,
    )  # fmt: skip
    assert outcome.kills == 10
    print(f"{outcome.name}: {outcome.figures}")
    assert not outcome.problems, outcome.problems
    assert outcome.found == outcome.acknowledged == 40 * 1000


def test_simulated_agents_keep_what_they_measured_through_an_influxdb_outage(stack, api, influx, engine, unique):
    """The shipped simulator's agents (`sendense simulate`, the demo's) through 12 s without InfluxDB,
    some of their jobs ending during it: every update they measured arrives, at the time it was
    measured, and every job ends as planned (none left to be timed out as failed)."""
    interval, jobs_planned = 0.5, 4
    config = SimulatorConfig(
        api_url=stack.api_url, token=stack.agent_token, jobs=jobs_planned, concurrency=jobs_planned,
        update_interval=interval, min_duration=8.0, max_duration=24.0, failure_rate=0.0, multi_disk_rate=0.5,
        seed=20261130, pick_up_pending=False, vm_names=[f"outage-{unique}"],
    )  # fmt: skip
    outage: list[float] = []

    async def run() -> SimulatorReport:
        simulator = asyncio.create_task(run_simulator(config))
        await asyncio.sleep(4.0)
        await asyncio.to_thread(stack.stop_influx)
        outage.append(time.time())
        await asyncio.sleep(12.0)
        outage.append(time.time())
        await asyncio.to_thread(stack.start_influx)
        return await asyncio.wait_for(simulator, 120)

    try:
        report = asyncio.run(run())
    finally:
        if not stack.server_running("influxdb.sh"):
            stack.start_influx()
    with engine.connect() as conn:
        jobs = conn.execute(
            select(backup_jobs.c.id, backup_jobs.c.status).where(backup_jobs.c.vm_name == f"outage-{unique}")
        ).all()
    print(f"simulator report: {report}")
    assert sorted(status for _, status in jobs) == ["completed"] * jobs_planned
    assert report.jobs_completed == jobs_planned and report.updates_dropped == 0
    assert report.updates_sent == report.updates_sampled > jobs_planned * 15
    found, ended_in_outage = 0, 0
    for job_id, _ in jobs:
        counted = influx.query("SELECT count(bytes_transferred) FROM job_telemetry WHERE job_id = $j", {"j": job_id})
        found += counted[0]["series"][0]["values"][0][1]
        times = sorted(found_timestamps(influx, job_id))
        widest = max(b - a for a, b in itertools.pairwise(times)) / 1e9
        assert widest <= 2 * interval, f"{job_id}: no points for {widest:.1f} s"
        ended_in_outage += outage[0] < times[-1] / 1e9 < outage[1]
    assert found == report.updates_sent
    # The schedule (seeded) ends some jobs while InfluxDB is away: their terminal updates waited.
    assert ended_in_outage >= 1, "no job ended during the outage: the test no longer covers a waiting end"
