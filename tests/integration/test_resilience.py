"""A 2xx is a promise: outages answer 503 with Retry-After, and nothing acknowledged is ever missing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import httpx
from litestar import Litestar, get
from litestar.testing import TestClient
from sqlalchemy import select

from api.errors import EXCEPTION_HANDLERS
from pipeline.db.tables import backup_jobs
from tests.support.probes import count_points, update_body, wait_for


def _create(agent, name: str) -> str:
    response = agent.post("/backups", json={"vm_name": name, "backup_type": "full", "repository_id": "r"})
    assert response.status_code == 201, response.text
    return response.json()["backup_id"]


def _row(engine, job_id: str):
    with engine.connect() as conn:
        return conn.execute(select(backup_jobs).where(backup_jobs.c.id == job_id)).one()


def _stamp(i: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=10) + timedelta(milliseconds=i)).isoformat()


def _assert_503(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["detail"]


def test_influxdb_outage_answers_503_and_loses_no_acknowledged_point(
    agent, influx, engine, stack, scheduler_jobs, unique
):
    job_id = _create(agent, f"outage-{unique}")
    acknowledged = set()
    for i in range(1, 31):
        assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, timestamp=_stamp(i))).status_code == 202
        acknowledged.add(i)

    stack.stop_influx()
    try:
        refused = []
        for i in range(31, 41):
            response = agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, timestamp=_stamp(i)))
            _assert_503(response)
            assert "InfluxDB" in response.json()["detail"]
            refused.append(i)
        final = agent.post(
            f"/telemetry/backup/{job_id}", json=update_body(41, status="completed", timestamp=_stamp(41))
        )
        _assert_503(final)
        # Nothing was acknowledged, so nothing is promised: the job is still running in MySQL.
        assert _row(engine, job_id).status == "running"
        ready = agent.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["influxdb"]["ok"] is False
        # The history still answers, from the MySQL mirror.
        history = agent.get(f"/telemetry/history/{job_id}").json()
        assert history["data_source"] == "live_snapshots"
        assert history["chart_source"] == "job_telemetry_snapshots" and history["chart_data"]
    finally:
        stack.start_influx()

    # The agent kept what was refused and sends it again: now every update is acknowledged.
    for i in refused:
        assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, timestamp=_stamp(i))).status_code == 202
        acknowledged.add(i)
    final = agent.post(f"/telemetry/backup/{job_id}", json=update_body(41, status="completed", timestamp=_stamp(41)))
    assert final.status_code == 200
    acknowledged.add(41)
    assert count_points(influx, job_id) == len(acknowledged) == 41
    assert agent.get("/health/ready").status_code == 200
    scheduler_jobs.roll_up()
    metrics = agent.get(f"/telemetry/history/{job_id}").json()["performance_metrics"]
    assert metrics["snapshots_recorded"] == 41


def test_mysql_outage_answers_503_on_every_endpoint_that_needs_it(agent, engine, stack, unique):
    job_id = _create(agent, f"mysql-outage-{unique}")
    assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(1, timestamp=_stamp(1))).status_code == 202
    stack.stop_mysql()
    try:
        calls = [
            ("POST", "/backups", {"vm_name": f"mysql-outage-{unique}", "backup_type": "full", "repository_id": "r"}),
            ("GET", "/backups", None),
            ("GET", f"/backups/{job_id}", None),
            ("GET", "/machines", None),
            ("GET", f"/machines/mysql-outage-{unique}", None),
            ("GET", f"/telemetry/history/{job_id}", None),
            ("POST", f"/telemetry/backup/{job_id}", update_body(2, timestamp=_stamp(2))),
            ("POST", f"/telemetry/backup/{job_id}", update_body(3, status="completed", timestamp=_stamp(3))),
            # A job this process has never seen: its first update needs MySQL to find it.
            ("POST", "/telemetry/backup/never-seen-before-job", update_body(1)),
            ("POST", "/telemetry/batch", {"updates": [{"job_type": "backup", "job_id": job_id, **update_body(4)}]}),
            ("GET", "/alerts", None),
            ("GET", "/alerts/1", None),
            ("GET", "/silences", None),
            ("GET", "/alert-rules", None),
        ]
        for method, path, body in calls:
            response = agent.request(method, path, json=body)
            assert response.status_code == 503, (method, path, response.status_code, response.text)
            assert int(response.headers["Retry-After"]) >= 1, (method, path)
        assert agent.get("/health/ready").status_code == 503
        assert agent.get("/health/live").status_code == 200
    finally:
        stack.start_mysql()
    assert (
        agent.post(
            f"/telemetry/backup/{job_id}", json=update_body(3, status="completed", timestamp=_stamp(3))
        ).status_code
        == 200
    )
    assert agent.get(f"/backups/{job_id}").json()["status"] == "completed"


def test_current_state_never_goes_backwards(agent, influx, engine, unique):
    job_id = _create(agent, f"order-{unique}")
    newer = update_body(9, timestamp=_stamp(900))
    older = update_body(5, timestamp=_stamp(500))
    assert agent.post(f"/telemetry/backup/{job_id}", json=newer).status_code == 202
    # The older update arrives late (another API process, a retry): acknowledged, but it does not win.
    assert agent.post(f"/telemetry/backup/{job_id}", json=older).status_code == 202
    row = _row(engine, job_id)
    assert row.bytes_transferred == 90
    assert count_points(influx, job_id) == 2
    disk_new = update_body(7, timestamp=_stamp(700), disk_index=1)
    disk_old = update_body(3, timestamp=_stamp(300), disk_index=1)
    assert agent.post(f"/telemetry/backup/{job_id}", json=disk_new).status_code == 202
    assert agent.post(f"/telemetry/backup/{job_id}", json=disk_old).status_code == 202
    assert agent.get(f"/backups/{job_id}").json()["disks"][0]["bytes_transferred"] == 70


def test_terminal_update_sent_again_is_200_and_a_different_end_is_409(agent, influx, unique):
    job_id = _create(agent, f"retry-{unique}")
    final = update_body(3, status="completed", timestamp=_stamp(3))
    assert agent.post(f"/telemetry/backup/{job_id}", json=final).status_code == 200
    # The agent did not hear the 200 (a dropped connection) and sends it again: same answer, one point.
    again = agent.post(f"/telemetry/backup/{job_id}", json=final)
    assert again.status_code == 200 and again.json()["status"] == "completed"
    assert count_points(influx, job_id) == 1
    other = agent.post(f"/telemetry/backup/{job_id}", json=update_body(3, status="failed", timestamp=_stamp(4)))
    assert other.status_code == 409 and "completed" in other.json()["detail"]


def test_pathological_bodies_are_400_or_413_never_500(agent, unique):
    job_id = _create(agent, f"patho-{unique}")
    deep = b'{"updates": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    nested_object = b'{"updates": [' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"]}"
    cases = [
        ("/telemetry/batch", deep, 400),
        ("/telemetry/batch", nested_object, 400),
        (f"/telemetry/backup/{job_id}", b"[" * 30_000 + b"]" * 30_000, 400),
        ("/backups", b'{"vm_name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
        ("/telemetry/batch", b'{"updates": [' + b"1," * 5_000_000 + b"1]}", 413),
        ("/telemetry/batch", b'{"updates": [' + b",".join([b"{}"] * 10_001) + b"]}", 400),
        (f"/telemetry/backup/{job_id}", b'{"a": "' + b"x" * 2_000_000 + b'"}', 413),
    ]
    for path, body, expected in cases:
        response = agent.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == expected, (path, len(body), response.status_code, response.text[:200])
        assert response.json()["detail"], path


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_unexpected_error_is_logged_with_its_traceback_and_answered_as_json():
    @get("/boom")
    async def boom() -> dict:
        raise ZeroDivisionError("a bug")

    # Litestar reconfigures logging when an app starts, so the handler sits on our logger itself.
    records = _Records()
    logger = logging.getLogger("sendense.api")
    logger.addHandler(records)
    try:
        app = Litestar([boom], exception_handlers=EXCEPTION_HANDLERS)
        with TestClient(app) as client:
            response = client.get("/boom")
    finally:
        logger.removeHandler(records)
    assert response.status_code == 500
    assert "ZeroDivisionError" in response.json()["detail"]
    [record] = records.records
    assert record.exc_info is not None and "GET /boom" in record.getMessage()


def test_any_number_of_api_processes_may_share_a_port(api, stack):
    # The old guard refused a second API on a port in use; processes are stateless now, so a second one
    # joins (granian binds with SO_REUSEPORT) and the first keeps serving.
    from tests.conftest import OUTPUT_DIR

    second = stack.start_process("api", log_path=OUTPUT_DIR / "api-second.log")
    try:
        wait_for(lambda: "worker" in (OUTPUT_DIR / "api-second.log").read_text(), what="the second API to start")
        assert second.poll() is None, "the second API exited"
        assert httpx.get(f"{api}/api/v1/health/live").status_code == 200
    finally:
        stack.stop_process(second)
