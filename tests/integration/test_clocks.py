"""Two clocks, named: silence is judged on the server's clock, durations and charts on the agent's.

Late (backfilled) agents and agents whose clock is behind must keep their jobs while they stream,
end with the duration they measured, and still be reaped on time when they truly go silent.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from pipeline.db.tables import backup_jobs
from pipeline.jobs.store import JobStore
from tests.support.probes import update_body

# The default of SENDENSE_STALE_JOB_TIMEOUT: what the demo's reaper uses.
STALE_AFTER = 900


def _create(agent, vm_name: str) -> str:
    response = agent.post("/backups", json={"vm_name": vm_name, "backup_type": "full", "repository_id": "repo-clock"})
    assert response.status_code == 201, response.text
    return response.json()["backup_id"]


def _send(agent, job_id: str, i: int, moment: datetime, total: int = 60, **extra) -> None:
    body = update_body(i, total=total, timestamp=moment.isoformat(), **extra)
    response = agent.post(f"/telemetry/backup/{job_id}", json=body)
    assert response.status_code in (200, 202), response.text


def _row(engine, job_id: str):
    with engine.connect() as conn:
        return conn.execute(select(backup_jobs).where(backup_jobs.c.id == job_id)).one()


def test_a_backfilled_job_streams_hours_late_completes_and_rolls_up_with_its_own_duration(
    agent, engine, scheduler_jobs, unique
):
    job_id = _create(agent, f"clock-backfill-{unique}")
    store = JobStore(engine)
    # The agent's outbox after a seven-hour outage: 60 updates ten seconds apart, sent at full speed.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=7)
    for i in range(60):
        _send(agent, job_id, i + 1, start + timedelta(seconds=10 * i))
        if i % 10 == 9:
            assert job_id not in store.reap(STALE_AFTER), "a job heard from a moment ago is not silent"
    _send(agent, job_id, 60, start + timedelta(seconds=600), status="completed")

    job = agent.get(f"/backups/{job_id}").json()
    assert job["status"] == "completed", job
    assert datetime.fromisoformat(job["started_at"]) == start
    assert datetime.fromisoformat(job["completed_at"]) == start + timedelta(seconds=600)
    assert job["duration_seconds"] == 600.0
    seen = datetime.fromisoformat(job["last_seen_at"])
    assert abs((seen - datetime.now(UTC)).total_seconds()) < 60, "last_seen_at is the server's clock"

    scheduler_jobs.roll_up()
    history = agent.get(f"/telemetry/history/{job_id}").json()
    assert history["data_source"] == "rolled_up"
    metrics = history["performance_metrics"]
    assert metrics["duration_seconds"] == 600
    assert metrics["chart_data"][-1]["t"] == 600 and metrics["chart_data"][-1]["phase"] == "completed"


def test_late_updates_older_than_the_jobs_state_still_end_its_silence(agent, engine, unique):
    job_id = _create(agent, f"clock-late-{unique}")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    _send(agent, job_id, 10, start + timedelta(seconds=100))
    first_seen = _row(engine, job_id).last_seen_at
    time.sleep(0.05)
    _send(agent, job_id, 5, start + timedelta(seconds=50))  # older than the state: acknowledged, not applied
    row = _row(engine, job_id)
    assert row.bytes_transferred == 100, "state never goes backwards"
    assert row.last_seen_at > first_seen, "but the server did hear from the job"


def test_an_agent_an_hour_behind_gets_true_durations_and_etas_and_is_reaped_on_time(agent, engine, unique):
    job_id = _create(agent, f"clock-behind-{unique}")
    store = JobStore(engine)
    skew = timedelta(hours=1)
    sent = []
    for i in range(1, 11):
        moment = datetime.now(UTC) - skew
        _send(agent, job_id, i, moment, total=20)  # 5 % a step: half done after ten
        sent.append(moment)
        time.sleep(0.2)
    span = (sent[-1] - sent[0]).total_seconds()

    assert job_id not in store.reap(STALE_AFTER), "timestamps an hour old are not an hour of silence"
    job = agent.get(f"/backups/{job_id}").json()
    assert job["status"] == "running"
    # The time so far is the agent's span plus the moment since the server last heard: not an hour more.
    assert span <= job["duration_seconds"] < span + 30, job["duration_seconds"]
    # The end lies ahead of now (on the server's clock), about as far as the job has run so far.
    assert job["eta_seconds"] is not None and job["eta_seconds"] > 0.5, job
    eta_at = datetime.fromisoformat(job["eta_at"])
    assert timedelta(seconds=0.5) < eta_at - datetime.now(UTC) < timedelta(minutes=5)

    # Truly silent now: reaped once the server has heard nothing for the configured time, not before.
    assert job_id not in store.reap(3)
    time.sleep(3.5)
    assert job_id in store.reap(3)
    row = _row(engine, job_id)
    assert row.status == "failed"
    assert row.completed_at == sent[-1].replace(tzinfo=None), "the end is the agent's time of its last update"
    assert row.error_message.startswith("telemetry timeout: the server received no update from this job for ")
    silent = int(row.error_message.split(" for ")[1].split(" s ")[0])
    assert 3 <= silent < 30 and "(limit 3 s)" in row.error_message
    job = agent.get(f"/backups/{job_id}").json()
    assert abs(job["duration_seconds"] - span) < 0.01, "started and ended on the agent's clock"


def test_an_agent_ahead_of_the_server_beyond_the_window_is_refused_clearly(agent, unique):
    job_id = _create(agent, f"clock-ahead-{unique}")
    body = update_body(1, timestamp=(datetime.now(UTC) + timedelta(minutes=10)).isoformat())
    response = agent.post(f"/telemetry/backup/{job_id}", json=body)
    assert response.status_code == 400
    assert "at most 300 s ahead" in response.json()["detail"]
