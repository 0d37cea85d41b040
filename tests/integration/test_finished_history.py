"""Finished means final: a finished job's history answer is its final summary, before the rollup has run too."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update

from pipeline.db.tables import backup_jobs
from pipeline.ingest.registry import JobEntry
from pipeline.tsdb.encoding import telemetry_line
from tests.support.probes import update_body

_STAGES = {"source_read": 40.0, "processing": 20.0, "network": 30.0, "target_write": 85.0}


def _create(agent, vm_name: str, **extra) -> str:
    body = {"vm_name": vm_name, "backup_type": "full", "repository_id": "repo-final", **extra}
    response = agent.post("/backups", json=body)
    assert response.status_code == 201, response.text
    return response.json()["backup_id"]


def _stamp(start: datetime, seconds: float) -> str:
    return (start + timedelta(seconds=seconds)).isoformat()


def _send(agent, job_id: str, body: dict, expect: int = 202) -> None:
    response = agent.post(f"/telemetry/backup/{job_id}", json=body)
    assert response.status_code == expect, response.text


def _run(agent, job_id: str, start: datetime, steps: int, every: float, **extra) -> None:
    """`steps` running updates of the whole job, `every` seconds apart from `start` (agent timestamps)."""
    for i in range(1, steps + 1):
        _send(agent, job_id, update_body(i, total=10, timestamp=_stamp(start, i * every), **extra))


def _stored(engine, job_id: str) -> dict | None:
    with engine.connect() as conn:
        return conn.execute(select(backup_jobs.c.performance_metrics).where(backup_jobs.c.id == job_id)).scalar_one()


def _history(client, job_id: str) -> dict:
    response = client.get(f"/telemetry/history/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def _summaries_computed(api: str) -> float:
    """The API's count of on-the-spot summaries (its Prometheus histogram's `_count`)."""
    text = httpx.get(f"{api}/metrics", timeout=10).text
    match = re.search(r"^sendense_finished_summary_seconds_count (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _finished_jobs(agent, engine, unique: str) -> dict[str, str]:
    """Finished jobs of every kind, none rolled up yet: {job_id: final status}."""
    start = datetime.now(UTC) - timedelta(hours=3)
    vm = f"final-vm-{unique}"
    # Five earlier completed runs of the VM, rolled up by the caller first: the anomaly baseline.
    jobs: dict[str, str] = {}
    # A completed run three times longer than the baseline's, with stage loads (bottleneck, anomalies).
    completed = _create(agent, vm)
    _run(agent, completed, start + timedelta(hours=1), 10, 30.0, stage_load=_STAGES)
    _send(agent, completed, update_body(10, total=10, status="completed", timestamp=_stamp(start, 3600 + 305)), 200)
    jobs[completed] = "completed"
    # Failed half-way, with its error.
    failed = _create(agent, f"final-fail-{unique}")
    _run(agent, failed, start, 5, 10.0)
    body = update_body(5, total=10, status="failed", error_message="NBD reset", timestamp=_stamp(start, 55))
    _send(agent, failed, body, 200)
    jobs[failed] = "failed"
    # Cancelled after two updates.
    cancelled = _create(agent, f"final-cancel-{unique}")
    _run(agent, cancelled, start, 2, 10.0)
    _send(agent, cancelled, update_body(2, total=10, status="cancelled", timestamp=_stamp(start, 25)), 200)
    jobs[cancelled] = "cancelled"
    # Two disks, each with its own updates, then the job's terminal update.
    disks = [{"disk_index": 0, "size_bytes": 1000}, {"disk_index": 1, "size_bytes": 3000}]
    multi = _create(agent, f"final-disks-{unique}", disks=disks)
    for i in range(1, 11):
        for disk, speed in ((0, 1_000_000), (1, 3_000_000)):
            body = update_body(i, total=10, disk_index=disk, timestamp=_stamp(start, 10 * i))
            body["transfer_speed_bps"] = speed
            _send(agent, multi, body)
        _send(agent, multi, update_body(i, total=10, timestamp=_stamp(start, 10 * i)))
    _send(agent, multi, update_body(10, total=10, status="completed", timestamp=_stamp(start, 115)), 200)
    jobs[multi] = "completed"
    # No telemetry at all: the backup engine gave up before any agent reported (it writes the row itself).
    empty = _create(agent, f"final-empty-{unique}")
    with engine.begin() as conn:
        conn.execute(
            update(backup_jobs)
            .where(backup_jobs.c.id == empty)
            .values(status="failed", completed_at=backup_jobs.c.created_at, error_message="no agent")
        )
    jobs[empty] = "failed"
    return jobs


def _baseline(agent, scheduler_jobs, unique: str) -> None:
    start = datetime.now(UTC) - timedelta(hours=5)
    for run, seconds in enumerate((100, 105, 95, 110, 100)):
        job_id = _create(agent, f"final-vm-{unique}")
        begin = start + timedelta(minutes=10 * run)
        _run(agent, job_id, begin, 10, seconds / 10, stage_load=_STAGES)
        _send(agent, job_id, update_body(10, total=10, status="completed", timestamp=_stamp(begin, seconds + 1)), 200)
    assert scheduler_jobs.roll_up().rolled_up >= 5


def test_finished_jobs_are_answered_with_the_summary_the_rollup_then_stores(
    agent, viewer, engine, scheduler_jobs, unique
):
    _baseline(agent, scheduler_jobs, unique)
    jobs = _finished_jobs(agent, engine, unique)

    early = {}
    for job_id, status in jobs.items():
        history = _history(viewer, job_id)
        assert history["data_source"] == "rolled_up", history
        assert history["status"] == status
        assert _stored(engine, job_id) is None, "the read must not store the summary"
        early[job_id] = history["performance_metrics"]
    completed = next(iter(jobs))
    assert early[completed]["anomaly_baseline_runs"] == 5
    assert [a["metric"] for a in early[completed]["anomalies"]] == ["duration_seconds"]
    assert early[completed]["bottleneck"]["stage"] == "target_write"
    multi = [j for j in jobs if "disks" in j][0]
    assert [d["disk_index"] for d in early[multi]["disks"]] == [0, 1]

    assert scheduler_jobs.roll_up().rolled_up >= len(jobs)
    for job_id, status in jobs.items():
        stored = _stored(engine, job_id)
        assert stored is not None, job_id
        assert sorted(stored) == sorted(early[job_id]), job_id
        for name, value in stored.items():
            assert early[job_id][name] == value, (job_id, name)
        assert early[job_id]["final_status"] == status
        later = _history(viewer, job_id)
        assert later == {"job_id": job_id, "status": status, "data_source": "rolled_up", "performance_metrics": stored}


def test_the_first_answer_after_a_terminal_update_is_final(agent, viewer, engine, unique):
    job_id = _create(agent, f"final-first-{unique}")
    start = datetime.now(UTC) - timedelta(minutes=5)
    _run(agent, job_id, start, 4, 10.0)
    assert _history(viewer, job_id)["data_source"] == "live_snapshots"
    _send(agent, job_id, update_body(10, total=10, status="completed", timestamp=_stamp(start, 45)), 200)
    # Before this change the answer was `live_snapshots` with status `completed` until the rollup had run.
    history = _history(viewer, job_id)
    assert history["status"] == "completed" and history["data_source"] == "rolled_up"
    chart = history["performance_metrics"]["chart_data"]
    assert chart[-1]["phase"] == "completed" and chart[-1]["p"] == 100.0
    assert history["performance_metrics"]["snapshots_recorded"] == 5
    assert _stored(engine, job_id) is None


@dataclass
class JobSheetHook:
    """The job sheet's `useTelemetryHistory` (react-query): fetch, then poll every `interval` while the
    last data's status is `running`, stop otherwise. A failed fetch keeps the last data (as react-query
    does), so an error answer neither stops nor changes what is shown."""

    client: httpx.Client
    job_id: str
    interval: float = 3.0
    answers: list[dict] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)

    def run(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            response = self.client.get(f"/telemetry/history/{self.job_id}")
            if response.status_code == 200:
                self.answers.append(response.json())
            else:
                self.errors.append(response.status_code)
            data = self.answers[-1] if self.answers else None
            if data is None or data["status"] != "running":  # refetchInterval: 3000 while running, else false
                return data
            assert time.monotonic() < deadline, "the job never finished"
            time.sleep(self.interval)


@pytest.mark.parametrize(("interval", "final"), [(3.0, "completed"), (0.25, "failed"), (0.25, "cancelled")])
def test_the_job_sheets_hook_stops_at_the_final_chart(agent, viewer, engine, stack, unique, interval, final):
    job_id = _create(agent, f"final-hook-{unique}")
    start = datetime.now(UTC) - timedelta(minutes=5)
    _send(agent, job_id, update_body(1, total=10, timestamp=_stamp(start, 10)))
    steps = 8

    def drive() -> None:
        # The agent, on its own connection, while the hook polls; no rollup runs meanwhile.
        with httpx.Client(
            base_url=f"{stack.api_url}/api/v1", headers={"Authorization": f"Bearer {stack.agent_token}"}, timeout=30
        ) as client:
            for i in range(2, steps + 1):
                time.sleep(interval * 1.5 / steps)  # the job runs over about two polls
                _send(client, job_id, update_body(i, total=10, timestamp=_stamp(start, 10 * i)))
            time.sleep(interval / 3)
            _send(client, job_id, update_body(steps, total=10, status=final, timestamp=_stamp(start, 95)), 200)

    driver = threading.Thread(target=drive)
    driver.start()
    hook = JobSheetHook(viewer, job_id, interval)
    last = hook.run()
    driver.join()

    assert hook.errors == []
    assert len(hook.answers) >= 2 and hook.answers[0]["data_source"] == "live_snapshots"
    assert all(a["status"] == "running" for a in hook.answers[:-1])
    assert last["status"] == final and last["data_source"] == "rolled_up", last
    metrics = last["performance_metrics"]
    assert metrics["chart_data"][-1]["phase"] == final
    assert metrics["snapshots_recorded"] == steps + 1 and metrics["final_status"] == final
    assert _stored(engine, job_id) is None, "the hook's final answer came before any rollup"


def test_concurrent_viewers_share_one_computation_and_the_answer_is_kept(
    agent, viewer, influx, settings, engine, api, unique
):
    job_id = _create(agent, f"final-many-{unique}")
    start_ns = (int(time.time()) - 7200) * 10**9
    first = update_body(0, total=10, timestamp=datetime.fromtimestamp(start_ns / 1e9, UTC).isoformat())
    _send(agent, job_id, first)
    # 20,000 points (a point every 0.25 s): a computation long enough for the requests to overlap it.
    entry = JobEntry(job_id, "backup", f"final-many-{unique}", "repo-final", "running")
    lines = [
        telemetry_line(
            entry.key(None),
            bytes_transferred=i * 1000,
            total_bytes=20_000_000,
            transfer_speed_bps=100_000_000 + i,
            progress_percent=i / 200,
            current_phase="transferring",
            worker_count=2,
            timestamp_ns=start_ns + (i + 1) * 250_000_000,
        )
        for i in range(20_000)
    ]
    for chunk in range(0, len(lines), 5000):
        influx.write("\n".join(lines[chunk : chunk + 5000]), rp=settings.influx.raw_rp)
    end = datetime.fromtimestamp(start_ns / 1e9 + 5001, UTC).isoformat()
    _send(agent, job_id, update_body(10, total=10, status="completed", timestamp=end), 200)

    before = _summaries_computed(api)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _history(viewer, job_id), range(8)))
    assert all(a["data_source"] == "rolled_up" for a in answers)
    assert all(a == answers[0] for a in answers)
    assert answers[0]["performance_metrics"]["snapshots_recorded"] == 20_002
    assert _summaries_computed(api) - before == 1, "eight viewers at once: one computation"
    assert _history(viewer, job_id) == answers[0]
    assert _summaries_computed(api) - before == 1, "kept: asked again, not computed again"
    assert _stored(engine, job_id) is None


def test_a_finished_job_is_503_while_influxdb_is_down_never_a_partial_view(agent, viewer, engine, stack, unique):
    job_id = _create(agent, f"final-outage-{unique}")
    start = datetime.now(UTC) - timedelta(minutes=5)
    _run(agent, job_id, start, 3, 10.0)
    _send(agent, job_id, update_body(3, total=10, status="completed", timestamp=_stamp(start, 35)), 200)
    stack.stop_influx()
    try:
        response = viewer.get(f"/telemetry/history/{job_id}")
        assert response.status_code == 503, response.text
        assert int(response.headers["Retry-After"]) >= 1
        assert "InfluxDB" in response.json()["detail"] and job_id in response.json()["detail"]
    finally:
        stack.start_influx()
    history = _history(viewer, job_id)
    assert history["data_source"] == "rolled_up"
    assert history["performance_metrics"]["snapshots_recorded"] == 4


def test_a_finished_job_whose_rollup_fails_is_answered_from_its_points(agent, viewer, engine, unique):
    job_id = _create(agent, f"final-broken-{unique}")
    start = datetime.now(UTC) - timedelta(minutes=5)
    _run(agent, job_id, start, 3, 10.0)
    _send(agent, job_id, update_body(3, total=10, status="completed", timestamp=_stamp(start, 35)), 200)
    # As the scheduler records a rollup that raised (bad data, a bug): the read would raise the same way.
    with engine.begin() as conn:
        conn.execute(
            update(backup_jobs).where(backup_jobs.c.id == job_id).values(rollup_attempts=1, rollup_last_error="boom")
        )
    history = _history(viewer, job_id)
    assert history["data_source"] == "live_snapshots" and len(history["chart_data"]) == 4
