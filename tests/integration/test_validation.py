"""Bad input is refused with a message naming the problem, and leaves no row and no point behind."""

from __future__ import annotations

import pytest

from tests.support.probes import count_points, rows_named, update_body

GOOD_UPDATE = update_body(1)


@pytest.fixture
def running_job(agent, unique) -> str:
    response = agent.post(
        "/backups", json={"vm_name": f"val-{unique}", "backup_type": "full", "repository_id": "repo-val"}
    )
    job_id = response.json()["backup_id"]
    assert agent.post(f"/telemetry/backup/{job_id}", json=GOOD_UPDATE).status_code == 202
    return job_id


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"bytes_transferred": "12"}, "bytes_transferred"),
        ({"bytes_transferred": -1}, "bytes_transferred"),
        ({"total_bytes": 2**63}, "total_bytes"),
        ({"transfer_speed_bps": 1.5}, "transfer_speed_bps"),
        ({"progress_percent": 150}, "progress_percent"),
        ({"progress_percent": -0.1}, "progress_percent"),
        ({"current_phase": "transfer\nring"}, "current_phase"),
        ({"current_phase": "x" * 101}, "current_phase"),
        ({"status": "exploded"}, "status"),
        ({"disk_index": -1}, "disk_index"),
        ({"worker_count": "many"}, "worker_count"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": "2026-01-01T00:00:00"}, "timestamp"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_update_is_refused_and_writes_no_point(agent, influx, running_job, change, field):
    before = count_points(influx, running_job)
    response = agent.post(f"/telemetry/backup/{running_job}", json={**GOOD_UPDATE, **change})
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]
    assert count_points(influx, running_job) == before


def test_missing_field_is_named(agent, running_job):
    body = dict(GOOD_UPDATE)
    del body["total_bytes"]
    response = agent.post(f"/telemetry/backup/{running_job}", json=body)
    assert response.status_code == 400 and "total_bytes" in response.json()["detail"]


def test_body_that_is_not_json_is_refused(agent, running_job):
    response = agent.post(
        f"/telemetry/backup/{running_job}", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


def test_timestamp_far_in_the_future_is_refused(agent, influx, running_job):
    response = agent.post(f"/telemetry/backup/{running_job}", json={**GOOD_UPDATE, "timestamp": "2099-01-01T00:00:00Z"})
    assert response.status_code == 400 and "timestamp" in response.json()["detail"]


def test_agent_timestamp_is_the_point_time(agent, influx, running_job):
    from datetime import UTC, datetime, timedelta

    moment = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=123456)
    body = {**GOOD_UPDATE, "timestamp": moment.isoformat()}
    assert agent.post(f"/telemetry/backup/{running_job}", json=body).status_code == 202
    result = influx.query(
        'SELECT transfer_speed_bps FROM "job_telemetry" WHERE job_id = $j ORDER BY time ASC LIMIT 1',
        {"j": running_job},
        epoch="u",
    )
    assert result[0]["series"][0]["values"][0][0] == int(moment.timestamp()) * 1_000_000 + 123456


@pytest.mark.parametrize(
    "job_path",
    [
        "backup/" + "a" * 256,
        "backup/has%20space",
        "backup/-leading-dash",
        "backup/semi;colon",
        "explode/job-1",
        "backup/job-1%0A",
    ],
)
def test_bad_path_is_refused(agent, job_path):
    response = agent.post(f"/telemetry/{job_path}", json=GOOD_UPDATE)
    assert response.status_code == 400, response.text


def test_update_for_unknown_job_is_404(agent, influx, unique):
    response = agent.post(f"/telemetry/backup/no-such-job-{unique}", json=GOOD_UPDATE)
    assert response.status_code == 404 and "does not exist" in response.json()["detail"]
    assert count_points(influx, f"no-such-job-{unique}") == 0


def test_update_with_the_wrong_job_type_is_409(agent, running_job):
    response = agent.post(f"/telemetry/restore/{running_job}", json=GOOD_UPDATE)
    assert response.status_code == 409 and "backup job" in response.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vm_name": "x" * 256}, "vm_name"),
        ({"vm_name": "line\nbreak"}, "vm_name"),
        ({"vm_name": "tab\there"}, "vm_name"),
        ({"vm_name": "nul\x00byte"}, "vm_name"),
        ({"vm_name": ""}, "vm_name"),
        ({"vm_name": "a/b"}, "vm_name"),
        ({"repository_id": "r" * 256}, "repository_id"),
        ({"backup_type": "weekly"}, "backup_type"),
        ({"job_type": "migration"}, "job_type"),
        ({"backup_id": "bad id with spaces"}, "backup_id"),
        ({"disks": [{"disk_index": 0, "size_bytes": -5}]}, "size_bytes"),
        ({"machine": {"cpu_count": "four"}}, "cpu_count"),
    ],
)
def test_bad_job_is_refused_and_creates_no_row(agent, engine, unique, change, field):
    vm_name = change.get("vm_name", f"badjob-{unique}")
    body = {"vm_name": f"badjob-{unique}", "backup_type": "full", "repository_id": "repo", **change}
    response = agent.post("/backups", json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]
    assert rows_named(engine, vm_name) == 0
    assert rows_named(engine, f"badjob-{unique}") == 0


def test_duplicate_disk_indexes_are_refused(agent, engine, unique):
    body = {
        "vm_name": f"dupdisk-{unique}",
        "backup_type": "full",
        "repository_id": "repo",
        "disks": [{"disk_index": 0}, {"disk_index": 0}],
    }
    response = agent.post("/backups", json=body)
    assert response.status_code == 400 and "disk_index" in response.json()["detail"]
    assert rows_named(engine, f"dupdisk-{unique}") == 0


def test_client_chosen_id_is_kept_and_a_duplicate_is_409(agent, unique):
    body = {"vm_name": "vm", "backup_type": "full", "repository_id": "repo", "backup_id": f"agent-{unique}"}
    assert agent.post("/backups", json=body).json()["backup_id"] == f"agent-{unique}"
    assert agent.post("/backups", json=body).status_code == 409


def test_batch_reports_bad_items_by_index_and_accepts_the_rest(agent, influx, running_job):
    items = [
        {"job_type": "backup", "job_id": running_job, **update_body(2)},
        {"job_type": "backup", "job_id": running_job, **update_body(3), "progress_percent": 150},
        {"job_type": "backup", "job_id": "no-such-job-anywhere", **update_body(4)},
        {"job_type": "backup", "job_id": running_job, **update_body(5)},
    ]
    before = count_points(influx, running_job)
    response = agent.post("/telemetry/batch", json={"updates": items})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["status"]) for r in body["rejected"]] == [(1, 400), (2, 404)]
    assert "progress_percent" in body["rejected"][0]["detail"]
    assert count_points(influx, running_job) == before + 2


def test_oversized_batch_is_refused(agent, running_job):
    items = [{"job_type": "backup", "job_id": running_job, **update_body(1)}] * 10_001
    response = agent.post("/telemetry/batch", json={"updates": items})
    assert response.status_code in (400, 413)


class TestAccess:
    def test_request_without_token_is_401(self, api):
        import httpx

        response = httpx.get(f"{api}/api/v1/backups")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")

    def test_wrong_token_is_401(self, api):
        import httpx

        response = httpx.post(
            f"{api}/api/v1/telemetry/backup/x", json=GOOD_UPDATE, headers={"Authorization": "Bearer nope"}
        )
        assert response.status_code == 401

    def test_viewer_may_read(self, viewer):
        assert viewer.get("/backups").status_code == 200
        assert viewer.get("/machines").status_code == 200

    def test_viewer_may_not_write(self, viewer, running_job, engine, unique):
        assert viewer.post(f"/telemetry/backup/{running_job}", json=GOOD_UPDATE).status_code == 403
        body = {"vm_name": f"viewer-{unique}", "backup_type": "full", "repository_id": "r"}
        assert viewer.post("/backups", json=body).status_code == 403
        assert rows_named(engine, f"viewer-{unique}") == 0

    def test_health_and_openapi_need_no_token(self, api):
        import httpx

        assert httpx.get(f"{api}/api/v1/health/live").status_code == 200
        assert httpx.get(f"{api}/api/v1/health/ready").status_code == 200
        schema = httpx.get(f"{api}/api/v1/schema/openapi.json").json()
        assert "/api/v1/telemetry/history/{job_id}" in schema["paths"]


def test_history_refuses_a_bad_job_id(agent):
    assert agent.get("/telemetry/history/job-1%0A").status_code == 400
    assert agent.get("/telemetry/history/no-such-job-at-all").status_code == 404
