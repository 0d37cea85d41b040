"""Every API process beats into pipeline_heartbeats: since when InfluxDB has failed its group commits, cleared
once they succeed again, which is what the pipeline_unhealthy rule reads."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from pipeline.db.tables import pipeline_heartbeats
from tests.conftest import OUTPUT_DIR
from tests.support.probes import update_body, wait_for


def _beat(engine, process: str):
    with engine.connect() as conn:
        return conn.execute(select(pipeline_heartbeats).where(pipeline_heartbeats.c.process == process)).first()


def test_an_api_process_beats_since_when_influxdb_fails_its_commits(stack, engine, unique):
    port = stack.api_port + 7
    # uvicorn with one worker serves in the process itself, so its heartbeat is named by this pid.
    proc = stack.start_api(
        server="uvicorn",
        port=port,
        env={"SENDENSE_API_HEARTBEAT_INTERVAL": "0.5"},
        log_path=OUTPUT_DIR / "api-beat.log",
    )
    process = f"api:{socket.gethostname()}:{proc.pid}"
    headers = {"Authorization": f"Bearer {stack.agent_token}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers=headers, timeout=30) as client:
            body = {"vm_name": f"beat-{unique}", "backup_type": "full", "repository_id": "r"}
            job_id = client.post("/backups", json=body).json()["backup_id"]
            assert client.post(f"/telemetry/backup/{job_id}", json=update_body(1)).status_code == 202
            first = wait_for(lambda: _beat(engine, process), what="the first heartbeat")
            assert first.influx_failing_since is None and first.mysql_failing_since is None

            stack.stop_influx()
            try:
                before = datetime.now(UTC).replace(tzinfo=None)
                assert client.post(f"/telemetry/backup/{job_id}", json=update_body(2)).status_code == 503
                failing = wait_for(
                    lambda: (b := _beat(engine, process)) is not None and b.influx_failing_since is not None and b,
                    what="a heartbeat saying InfluxDB fails",
                )
                assert (
                    before - timedelta(seconds=1)
                    <= failing.influx_failing_since
                    <= datetime.now(UTC).replace(tzinfo=None)
                )
                assert failing.mysql_failing_since is None and failing.queue_full_since is None
                assert "InfluxDB" in failing.detail
                # Later failures keep the first time: it says since when, not when last.
                assert client.post(f"/telemetry/backup/{job_id}", json=update_body(3)).status_code == 503
                seen = failing.seen_at
                later = wait_for(lambda: (b := _beat(engine, process)).seen_at > seen and b, what="another beat")
                assert later.influx_failing_since == failing.influx_failing_since
            finally:
                stack.start_influx()
            assert client.post(f"/telemetry/backup/{job_id}", json=update_body(4)).status_code == 202
            wait_for(lambda: _beat(engine, process).influx_failing_since is None, what="the failure cleared")
            assert _beat(engine, process).detail is None
    finally:
        stack.stop_process(proc)
