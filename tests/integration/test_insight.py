"""Operator insight through the real API: ETA of a running job, anomaly flags of finished ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.probes import update_body

GIB = 1024**3


def _create(agent, vm: str, backup_type: str = "incremental") -> str:
    body = {"vm_name": vm, "backup_type": backup_type, "repository_id": "repo-insight"}
    return agent.post("/backups", json=body).json()["backup_id"]


def _run(agent, job_id: str, start: datetime, seconds: int, total: int, *, progress_per_s: float, end: bool):
    """Updates every 10 s at a steady progress rate; with `end`, a terminal update at 100 %."""
    for t in range(0, seconds + 1, 10):
        progress = min(100.0, progress_per_s * t)
        body = {
            "bytes_transferred": int(total * progress / 100),
            "total_bytes": total,
            "transfer_speed_bps": int(total * progress_per_s / 100),
            "progress_percent": progress,
            "current_phase": "transferring",
            "timestamp": (start + timedelta(seconds=t)).isoformat(),
        }
        assert agent.post(f"/telemetry/backup/{job_id}", json=body).status_code == 202
    if end:
        final = {**body, "progress_percent": 100.0, "bytes_transferred": total, "status": "completed"}
        final["timestamp"] = (start + timedelta(seconds=seconds + 5)).isoformat()
        assert agent.post(f"/telemetry/backup/{job_id}", json=final).status_code == 200


def test_a_running_job_has_an_eta_once_it_has_progressed(agent, viewer, unique):
    job_id = _create(agent, f"eta-{unique}")
    start = datetime.now(UTC) - timedelta(seconds=400)
    # Nothing to tell yet: 4 % after 40 s.
    _run(agent, job_id, start, 40, 100 * GIB, progress_per_s=0.1, end=False)
    early = viewer.get(f"/telemetry/history/{job_id}").json()
    assert early["eta_seconds"] is None and early["eta_at"] is None and "5 %" in early["eta_reason"]
    # 40 % after 400 s at 0.1 %/s, the last update now: 600 s to go.
    _run(agent, job_id, start, 400, 100 * GIB, progress_per_s=0.1, end=False)
    live = viewer.get(f"/telemetry/history/{job_id}").json()
    assert live["eta_reason"] is None
    assert live["eta_seconds"] == pytest.approx(600, rel=0.05)
    eta_at = datetime.fromisoformat(live["eta_at"])
    assert abs((eta_at - datetime.now(UTC)).total_seconds() - live["eta_seconds"]) < 5
    job = viewer.get(f"/backups/{job_id}").json()
    assert job["eta_seconds"] == pytest.approx(600, rel=0.05) and job["eta_at"]


def test_a_run_much_bigger_than_usual_is_flagged_with_a_sentence(agent, viewer, scheduler_jobs, unique):
    vm = f"anomaly-{unique}"
    start = datetime.now(UTC) - timedelta(days=2)
    usual = []
    for n in range(6):
        job_id = _create(agent, vm)
        _run(agent, job_id, start + timedelta(hours=n), 200, (10 + n % 2) * GIB, progress_per_s=0.5, end=True)
        usual.append(job_id)
        scheduler_jobs.roll_up()  # each run is compared with the ones rolled up before it
    big = _create(agent, vm)
    # Five times the data at the usual speed: five times as long.
    _run(agent, big, start + timedelta(hours=10), 1000, 50 * GIB, progress_per_s=0.1, end=True)
    scheduler_jobs.roll_up()

    assert all(viewer.get(f"/backups/{j}").json()["anomalies"] == [] for j in usual)
    flags = {a["metric"]: a for a in viewer.get(f"/backups/{big}").json()["anomalies"]}
    assert set(flags) == {"bytes_transferred", "duration_seconds"}
    assert flags["bytes_transferred"]["sentence"] == "transferred 4.8× more data than usual"
    assert flags["duration_seconds"]["sentence"].startswith("took 4.") and flags["duration_seconds"]["score"] >= 3.5
    history = viewer.get(f"/telemetry/history/{big}").json()["performance_metrics"]
    assert history["anomaly_baseline_runs"] == 6 and len(history["anomalies"]) == 2
    machine = viewer.get(f"/machines/{vm}").json()
    assert [a["backup_id"] for a in machine["anomalies"]] == [big, big]
    assert next(t for t in machine["trend"] if t["backup_id"] == big)["anomalies"]


def test_a_first_run_is_not_judged(agent, viewer, scheduler_jobs, unique):
    job_id = _create(agent, f"first-{unique}")
    _run(agent, job_id, datetime.now(UTC) - timedelta(minutes=10), 200, GIB, progress_per_s=0.5, end=True)
    scheduler_jobs.roll_up()
    metrics = viewer.get(f"/telemetry/history/{job_id}").json()["performance_metrics"]
    assert metrics["anomalies"] == [] and metrics["anomaly_baseline_runs"] == 0


def test_a_refused_update_stamped_after_the_end_is_not_summarised(agent, influx, settings, scheduler_jobs, unique):
    job_id = _create(agent, f"stray-{unique}")
    start = datetime.now(UTC) - timedelta(minutes=10)
    _run(agent, job_id, start, 100, GIB, progress_per_s=1.0, end=True)
    # Another writer (or a process that had not heard of the end) put a point after it.
    stamp = int((start + timedelta(seconds=200)).timestamp() * 1e9)
    influx.write(
        f'job_telemetry,job_id={job_id},job_type=backup current_phase="cancelled",transfer_speed_bps=0i {stamp}',
        rp=settings.influx.raw_rp,
    )
    late = update_body(1, status="cancelled", timestamp=(start + timedelta(seconds=300)).isoformat())
    assert agent.post(f"/telemetry/backup/{job_id}", json=late).status_code == 409
    scheduler_jobs.roll_up()
    metrics = agent.get(f"/telemetry/history/{job_id}").json()["performance_metrics"]
    assert metrics["snapshots_recorded"] == 12
    assert metrics["chart_data"][-1]["phase"] == "completed"


def test_the_busiest_stage_is_named_while_running_and_averaged_in_the_summary(agent, viewer, scheduler_jobs, unique):
    job_id = _create(agent, f"bottleneck-{unique}")
    start = datetime.now(UTC) - timedelta(minutes=5)
    for i in range(10):
        body = update_body(i, total=10, timestamp=(start + timedelta(seconds=10 * i)).isoformat())
        body["stage_load"] = {"source_read": 30.0, "processing": 20.0, "network": 40.0, "target_write": 70.0 + i}
        response = agent.post(f"/telemetry/backup/{job_id}", json=body)
        assert response.status_code == 202, response.text
    live = viewer.get(f"/telemetry/history/{job_id}").json()
    assert live["bottleneck"]["text"] == "Bottleneck: target 79 %"
    assert live["current_state"]["stage_load"]["network"] == 40.0
    final = update_body(10, total=10, status="completed", timestamp=(start + timedelta(seconds=100)).isoformat())
    assert agent.post(f"/telemetry/backup/{job_id}", json=final).status_code == 200
    scheduler_jobs.roll_up()
    summary = viewer.get(f"/telemetry/history/{job_id}").json()["performance_metrics"]["bottleneck"]
    assert summary["stage"] == "target_write" and summary["loads"]["target_write"] == 74.5
    assert summary["loads"]["source_read"] == 30.0


@pytest.mark.parametrize(
    "stage_load", [{"target_write": 101}, {"target_write": -1}, {"disk": 50}, {"network": "busy"}, [50]]
)
def test_stage_loads_are_validated(agent, unique, stage_load):
    job_id = _create(agent, f"stages-{unique}")
    response = agent.post(f"/telemetry/backup/{job_id}", json={**update_body(1), "stage_load": stage_load})
    assert response.status_code == 400 and "stage_load" in response.json()["detail"]


def test_each_disk_has_its_curve_live_and_after_the_rollup(agent, viewer, scheduler_jobs, unique):
    body = {"vm_name": f"disks-{unique}", "backup_type": "full", "repository_id": "r"}
    body["disks"] = [{"disk_index": 0, "size_bytes": 1000}, {"disk_index": 1, "size_bytes": 3000}]
    job_id = agent.post("/backups", json=body).json()["backup_id"]
    start = datetime.now(UTC) - timedelta(minutes=10)
    for i in range(1, 11):
        stamp = (start + timedelta(seconds=10 * i)).isoformat()
        for disk, speed in ((0, 1_000_000), (1, 3_000_000)):
            update = update_body(i, total=10, disk_index=disk, timestamp=stamp)
            update["transfer_speed_bps"] = speed
            assert agent.post(f"/telemetry/backup/{job_id}", json=update).status_code == 202
        assert (
            agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, total=10, timestamp=stamp)).status_code == 202
        )
    live = viewer.get(f"/telemetry/history/{job_id}/disks").json()
    assert live["data_source"] == "live_snapshots"
    assert [d["disk_index"] for d in live["disks"]] == [0, 1]
    assert {p["s"] for p in live["disks"][1]["chart_data"]} == {3_000_000}
    final = update_body(11, total=10, status="completed", timestamp=(start + timedelta(seconds=115)).isoformat())
    assert agent.post(f"/telemetry/backup/{job_id}", json=final).status_code == 200
    scheduler_jobs.roll_up()
    kept = viewer.get(f"/telemetry/history/{job_id}/disks").json()
    assert kept["data_source"] == "rolled_up"
    assert [d["disk_index"] for d in kept["disks"]] == [0, 1]
    assert 1 <= len(kept["disks"][0]["chart_data"]) <= 62
    assert {p["s"] for p in kept["disks"][0]["chart_data"]} == {1_000_000}
    assert viewer.get(f"/telemetry/history/no-such-{unique}/disks").status_code == 404
