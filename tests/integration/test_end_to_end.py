"""A job's whole life on the real stack: create, stream, finish, roll up, purge."""

from __future__ import annotations

from sqlalchemy import func, select, text, update

from pipeline.db.tables import backup_jobs
from pipeline.jobs.store import JobStore
from tests.support.job_sheet import JOB_SHEET_FIELDS
from tests.support.probes import count_points, count_series, mirror_rows, update_body


def _create(agent, vm_name: str, **extra) -> str:
    response = agent.post(
        "/backups", json={"vm_name": vm_name, "backup_type": "full", "repository_id": "repo-e2e", **extra}
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "pending"
    return job["backup_id"]


def _summary_points(influx, job_id: str) -> list[dict]:
    results = influx.query('SELECT * FROM "job_summaries"."job_summary" WHERE job_id = $job_id', {"job_id": job_id})
    series = results[0].get("series", []) if results else []
    return [dict(zip(s["columns"], v, strict=True)) for s in series for v in s["values"]]


def _assert_rolled_up(agent, influx, engine, job_id: str, status: str) -> dict:
    history = agent.get(f"/telemetry/history/{job_id}").json()
    assert history["data_source"] == "rolled_up", history
    assert history["status"] == status
    metrics = history["performance_metrics"]
    for name, kind in JOB_SHEET_FIELDS.items():
        assert isinstance(metrics[name], kind), (name, metrics[name])
    for point in metrics["chart_data"]:
        assert set(point) == {"t", "s", "p", "phase"}
    assert count_points(influx, job_id) == 0, "raw points must be gone after the rollup"
    assert count_series(influx, job_id) == 0, "DROP SERIES must leave no series behind"
    assert mirror_rows(engine, job_id) == 0, "mirror rows must be deleted after the rollup"
    summaries = _summary_points(influx, job_id)
    assert len(summaries) == 1 and summaries[0]["status"] == status
    with engine.connect() as conn:
        row = conn.execute(select(backup_jobs.c.purged_at).where(backup_jobs.c.id == job_id)).one()
    assert row.purged_at is not None
    return metrics


def test_completed_job_goes_from_live_points_to_rolled_up_summary(agent, influx, engine, scheduler_jobs, unique):
    job_id = _create(agent, f"e2e-ok-{unique}", disks=[{"disk_index": 0, "size_bytes": 5000}])
    for i in range(1, 21):
        response = agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, total=20))
        assert response.status_code == 202, response.text
        assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, total=20, disk_index=0)).status_code == 202

    assert count_points(influx, job_id, where="AND disk_index = ''") == 20
    assert count_points(influx, job_id, where="AND disk_index = '0'") == 20
    job = agent.get(f"/backups/{job_id}").json()
    assert job["status"] == "running" and job["started_at"] is not None
    assert job["bytes_transferred"] == 200 and job["progress_percent"] == 100.0
    assert job["disks"][0]["bytes_transferred"] == 200
    assert mirror_rows(engine, job_id) >= 1, "the first update of a job is mirrored at once"
    live = agent.get(f"/telemetry/history/{job_id}").json()
    assert live["data_source"] == "live_snapshots"
    assert len(live["chart_data"]) == 20
    assert live["current_state"]["bytes_transferred"] == 200

    final = agent.post(f"/telemetry/backup/{job_id}", json=update_body(20, total=20, status="completed"))
    assert final.status_code == 200, final.text
    # Durable at once: the row says completed before any background flush could have run.
    with engine.connect() as conn:
        row = conn.execute(select(backup_jobs).where(backup_jobs.c.id == job_id)).one()
    assert row.status == "completed" and row.completed_at is not None
    assert count_points(influx, job_id, where="AND disk_index = ''") == 21
    # Finished but not rolled up yet: already the final summary, computed from the raw points (not stored).
    early = agent.get(f"/telemetry/history/{job_id}").json()
    assert early["data_source"] == "rolled_up" and early["status"] == "completed"
    assert early["performance_metrics"]["chart_data"][-1]["phase"] == "completed"
    assert row.performance_metrics is None
    assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(21)).status_code == 409

    assert scheduler_jobs.roll_up().rolled_up >= 1
    metrics = _assert_rolled_up(agent, influx, engine, job_id, "completed")
    assert metrics["snapshots_recorded"] == 21
    assert metrics["bytes_transferred"] == 200 and metrics["total_bytes"] == 200
    assert metrics["peak_speed_bps"] == 1_600_000
    assert metrics["min_speed_bps"] == 1_000_000
    assert metrics["chart_data"][-1]["phase"] == "completed"
    assert metrics["chart_data"][-1]["p"] == 100.0
    assert metrics["disks"][0]["snapshots_recorded"] == 20
    assert agent.get(f"/backups/{job_id}").json()["has_performance_metrics"] is True


def test_failed_job_is_rolled_up_with_its_error(agent, influx, engine, scheduler_jobs, unique):
    job_id = _create(agent, f"e2e-fail-{unique}")
    for i in range(1, 6):
        assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(i)).status_code == 202
    final = agent.post(
        f"/telemetry/backup/{job_id}",
        json=update_body(5, status="failed", error_message="NBD connection reset by peer"),
    )
    assert final.status_code == 200
    job = agent.get(f"/backups/{job_id}").json()
    assert job["status"] == "failed" and job["error_message"] == "NBD connection reset by peer"

    scheduler_jobs.roll_up()
    metrics = _assert_rolled_up(agent, influx, engine, job_id, "failed")
    assert metrics["snapshots_recorded"] == 6
    assert metrics["chart_data"][-1]["phase"] == "failed"


def test_job_finished_without_telemetry_gets_an_empty_summary(agent, influx, engine, scheduler_jobs, unique):
    job_id = _create(agent, f"e2e-empty-{unique}")
    assert agent.get(f"/telemetry/history/{job_id}").json()["data_source"] == "none"
    # The backup engine gave up before any agent reported (as the job sheet's engine writes status itself).
    with engine.begin() as conn:
        conn.execute(
            update(backup_jobs)
            .where(backup_jobs.c.id == job_id)
            .values(status="failed", completed_at=backup_jobs.c.created_at, error_message="no agent")
        )
    # Finished: its (empty) summary at once, before the rollup stores the same one.
    history = agent.get(f"/telemetry/history/{job_id}").json()
    assert history["data_source"] == "rolled_up" and history["performance_metrics"]["snapshots_recorded"] == 0

    scheduler_jobs.roll_up()
    metrics = _assert_rolled_up(agent, influx, engine, job_id, "failed")
    assert metrics["snapshots_recorded"] == 0 and metrics["chart_data"] == []
    assert metrics == history["performance_metrics"]
    # Not looked at again: a second run finds nothing for this job.
    with engine.connect() as conn:
        first = conn.execute(select(backup_jobs.c.rolled_up_at).where(backup_jobs.c.id == job_id)).scalar_one()
    scheduler_jobs.roll_up()
    with engine.connect() as conn:
        again = conn.execute(select(backup_jobs.c.rolled_up_at).where(backup_jobs.c.id == job_id)).scalar_one()
    assert first == again


def test_job_with_only_a_terminal_update_is_rolled_up(agent, influx, engine, scheduler_jobs, unique):
    job_id = _create(agent, f"e2e-cancel-{unique}")
    response = agent.post(f"/telemetry/backup/{job_id}", json=update_body(0, status="cancelled"))
    assert response.status_code == 200
    scheduler_jobs.roll_up()
    metrics = _assert_rolled_up(agent, influx, engine, job_id, "cancelled")
    assert metrics["snapshots_recorded"] == 1
    assert [p["phase"] for p in metrics["chart_data"]] == ["cancelled"]


def test_stale_running_job_is_failed_by_the_reaper_and_rolled_up(agent, influx, engine, scheduler_jobs, unique):
    job_id = _create(agent, f"e2e-stale-{unique}")
    assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(1)).status_code == 202
    assert agent.get(f"/backups/{job_id}").json()["status"] == "running", "a 202 means the state is committed"
    # The server heard nothing for two hours (other tests' jobs are recent, so only leftovers of old runs
    # are reaped too).
    with engine.begin() as conn:
        conn.execute(
            update(backup_jobs)
            .where(backup_jobs.c.id == job_id)
            .values(last_seen_at=func.date_sub(func.utc_timestamp(6), text("INTERVAL 2 HOUR")))
        )
    reaped = JobStore(engine).reap(stale_after=3600)
    assert job_id in reaped
    job = agent.get(f"/backups/{job_id}").json()
    assert job["status"] == "failed" and job["error_message"].startswith("telemetry timeout")
    # The very next update is refused: every acknowledgement reads the job's status in its commit.
    assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(2)).status_code == 409
    scheduler_jobs.roll_up()
    scheduler_jobs.purge()
    _assert_rolled_up(agent, influx, engine, job_id, "failed")


def test_job_sheet_example_body_creates_a_pending_job(agent, unique):
    body = {"vm_name": "pgtest1", "backup_type": "incremental", "repository_id": "repo-local-1759780872"}
    response = agent.post("/backups", json=body)
    assert response.status_code == 201
    job = response.json()
    assert job["backup_id"].startswith("backup-pgtest1-")
    assert job["type"] == "incremental" and job["status"] == "pending"
    listed = agent.get("/backups", params={"vm_name": "pgtest1", "status": "pending"}).json()
    assert job["backup_id"] in [b["backup_id"] for b in listed["backups"]]
