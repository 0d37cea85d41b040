"""The simulator against the real API: it runs jobs to their end and picks up jobs created with POST /backups."""

from __future__ import annotations

import asyncio

from pipeline.agent.simulator import SimulatorConfig, run_simulator
from tests.support.probes import wait_for


def test_simulator_runs_a_pending_job_created_with_the_job_sheets_curl(agent, api, stack, scheduler_jobs, unique):
    created = agent.post(
        "/backups", json={"vm_name": f"sim-{unique}", "backup_type": "incremental", "repository_id": "repo-sim"}
    )
    job_id = created.json()["backup_id"]
    config = SimulatorConfig(
        api_url=api,
        token=stack.agent_token,
        jobs=0,
        concurrency=3,
        update_interval=0.1,
        min_duration=1.0,
        max_duration=2.0,
        failure_rate=0.0,
        seed=7,
        pending_poll_interval=0.3,
    )

    async def run_until_ours_finishes():
        stop = asyncio.Event()

        async def watch():
            while agent.get(f"/backups/{job_id}").json()["status"] in ("pending", "running"):
                await asyncio.sleep(0.2)
            stop.set()

        watcher = asyncio.create_task(watch())
        report = await asyncio.wait_for(run_simulator(config, stop=stop), timeout=60)
        await watcher
        return report

    report = asyncio.run(run_until_ours_finishes())
    assert report.errors == 0
    job = agent.get(f"/backups/{job_id}").json()
    assert job["status"] == "completed" and job["progress_percent"] == 100.0
    scheduler_jobs.roll_up()
    history = wait_for(
        lambda: (h := agent.get(f"/telemetry/history/{job_id}").json())["data_source"] == "rolled_up" and h
    )
    metrics = history["performance_metrics"]
    assert metrics["snapshots_recorded"] >= 5
    phases = [p["phase"] for p in metrics["chart_data"]]
    assert phases[-1] == "completed" and "transferring" in phases
