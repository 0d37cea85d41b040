"""Nothing accepted is lost: an InfluxDB outage mid-stream, and a graceful API shutdown."""

from __future__ import annotations

import dataclasses

import httpx
from sqlalchemy import select

from pipeline.db.tables import backup_jobs
from tests.conftest import OUTPUT_DIR
from tests.support.probes import count_points, update_body, wait_for, wait_idle


def _create(agent, name: str) -> str:
    response = agent.post("/backups", json={"vm_name": name, "backup_type": "full", "repository_id": "r"})
    return response.json()["backup_id"]


def test_influxdb_outage_loses_no_accepted_point(agent, influx, engine, stack, scheduler_jobs, unique):
    job_id = _create(agent, f"outage-{unique}")
    accepted = 0
    for i in range(1, 51):
        assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, total=150)).status_code == 202
        accepted += 1
    wait_idle(agent)

    stack.stop_influx()
    try:
        for i in range(51, 151):
            response = agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, total=150))
            assert response.status_code == 202, response.text
            accepted += 1
        ready = wait_for(
            lambda: (r := agent.get("/health/ready")).status_code == 503 and r.json(),
            what="readiness to report the outage",
        )
        assert ready["checks"]["influxdb"]["ok"] is False
        assert ready["checks"]["point_buffer"]["backlog"] > 0
        # The history still answers, from the MySQL mirror.
        history = agent.get(f"/telemetry/history/{job_id}").json()
        assert history["data_source"] == "live_snapshots"
        assert history["chart_source"] == "job_telemetry_snapshots" and history["chart_data"]
        # A terminal update during the outage is durable in MySQL, its points still pending.
        final = agent.post(f"/telemetry/backup/{job_id}", json=update_body(150, total=150, status="completed"))
        assert final.status_code == 200 and final.json()["points_pending"] is True
        accepted += 1
        assert scheduler_jobs.roll_up() == 0 or _not_rolled_up(engine, job_id)
    finally:
        stack.start_influx()

    wait_idle(agent, timeout=60)
    assert count_points(influx, job_id) == accepted == 151
    wait_for(lambda: not _row(engine, job_id).telemetry_pending, what="telemetry_pending to clear")
    assert agent.get("/health/ready").status_code == 200
    scheduler_jobs.roll_up()
    metrics = agent.get(f"/telemetry/history/{job_id}").json()["performance_metrics"]
    assert metrics["snapshots_recorded"] == 151


def _row(engine, job_id: str):
    with engine.connect() as conn:
        return conn.execute(select(backup_jobs).where(backup_jobs.c.id == job_id)).one()


def _not_rolled_up(engine, job_id: str) -> bool:
    return _row(engine, job_id).rolled_up_at is None


def test_graceful_shutdown_writes_everything_buffered(agent, influx, engine, stack, unique):
    # A second API whose buffers would hold everything for a minute: only the shutdown flush writes it.
    slow = dataclasses.replace(
        stack,
        api_port=stack.api_port + 1,
        extra_env={
            **stack.extra_env,
            "SENDENSE_INGEST_FLUSH_INTERVAL": "60",
            "SENDENSE_STATE_FLUSH_INTERVAL": "60",
            "SENDENSE_INGEST_BATCH_SIZE": "100000",
        },
        started=[],
    )
    proc = slow.start_api(log_path=OUTPUT_DIR / "api-shutdown.log")
    job_id = _create(agent, f"shutdown-{unique}")
    headers = {"Authorization": f"Bearer {stack.agent_token}"}
    try:
        with httpx.Client(base_url=f"{slow.api_url}/api/v1", headers=headers) as client:
            for i in range(1, 41):
                assert client.post(f"/telemetry/backup/{job_id}", json=update_body(i, total=40)).status_code == 202
            checks = client.get("/health/ready").json()["checks"]
            assert checks["point_buffer"]["backlog"] == 40
    finally:
        assert slow.stop_process(proc) == 0
    assert count_points(influx, job_id) == 40
    row = _row(engine, job_id)
    assert row.status == "running" and row.bytes_transferred == 400


def test_a_second_api_on_the_same_port_refuses_to_start(api, stack):
    # granian would share the port (SO_REUSEPORT) and split every job's updates between processes.
    second = stack.start_process("api", log_path=OUTPUT_DIR / "api-second.log")
    assert second.wait(timeout=30) == 2
    assert "already in use" in (OUTPUT_DIR / "api-second.log").read_text()
