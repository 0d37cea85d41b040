"""Names full of line-protocol and InfluxQL metacharacters are stored and shown exactly as given."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.support.probes import count_points, count_series, update_body

NASTY_NAMES = [
    "vm 1,a=b \"x\" 'y'",
    'SQL Server (prod) = main, "east"',
    "файл-сервер 01 ' OR '1'='1",
    'x" WHERE 1=1; DROP SERIES FROM job_telemetry --',
    "trailing space ",
]


def _measurements(influx) -> set[str]:
    results = influx.query("SHOW MEASUREMENTS")
    return {v[0] for r in results for s in r.get("series", []) for v in s["values"]}


@pytest.mark.parametrize("base_name", NASTY_NAMES)
def test_nasty_vm_name_round_trips_through_every_store(agent, influx, engine, scheduler_jobs, unique, base_name):
    vm_name = f"{base_name} {unique}"
    repository = f"repo, \"{unique}\" = 'x'"
    created = agent.post("/backups", json={"vm_name": vm_name, "backup_type": "full", "repository_id": repository})
    assert created.status_code == 201, created.text
    job_id = created.json()["backup_id"]
    assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in job_id)
    measurements_before = _measurements(influx)

    for i in range(1, 6):
        assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, total=5)).status_code == 202

    # Exactly one series, whose tags are the names as given (no extra point, series or measurement).
    assert count_series(influx, job_id) == 1
    assert count_points(influx, job_id) == 5
    tags = influx.query(
        'SHOW TAG VALUES FROM "job_telemetry" WITH KEY IN ("vm_name", "repository_id") WHERE job_id = $j', {"j": job_id}
    )
    values = {row[0]: row[1] for r in tags for s in r.get("series", []) for row in s["values"]}
    assert values == {"vm_name": vm_name, "repository_id": repository}
    assert _measurements(influx) <= measurements_before | {"job_telemetry", "job_summary"}

    live = agent.get(f"/telemetry/history/{job_id}").json()
    assert live["data_source"] == "live_snapshots" and len(live["chart_data"]) == 5

    listed = agent.get("/backups", params={"vm_name": vm_name}).json()
    assert [b["vm_name"] for b in listed["backups"]] == [vm_name]
    assert listed["backups"][0]["repository_id"] == repository
    machine = agent.get(f"/machines/{quote(vm_name, safe='')}")
    assert machine.status_code == 200, machine.text
    assert machine.json()["vm_name"] == vm_name and machine.json()["kpis"]["total_backups"] == 1
    found = agent.get("/machines", params={"search": vm_name}).json()["machines"]
    assert vm_name in [m["vm_name"] for m in found]

    assert (
        agent.post(f"/telemetry/backup/{job_id}", json=update_body(5, total=5, status="completed")).status_code == 200
    )
    scheduler_jobs.roll_up()
    rolled = agent.get(f"/telemetry/history/{job_id}").json()
    assert rolled["data_source"] == "rolled_up"
    assert rolled["performance_metrics"]["snapshots_recorded"] == 6
    assert count_series(influx, job_id) == 0

    summary = influx.query(
        'SELECT vm_name, repository_id, job_id FROM "job_summaries"."job_summary" WHERE vm_name = $vm', {"vm": vm_name}
    )
    rows = summary[0]["series"][0]["values"]
    assert [(r[1], r[2], r[3]) for r in rows] == [(vm_name, repository, job_id)]
