"""The flows table at scale: counters kept by the job store, pages, sorts, search, and each machine's RPO."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support.probes import update_body


def _job(agent, vm: str, *, end: str | None, age_hours: float = 0.0, backup_type: str = "incremental") -> str:
    job_id = agent.post("/backups", json={"vm_name": vm, "backup_type": backup_type, "repository_id": "r"}).json()[
        "backup_id"
    ]
    stamp = (datetime.now(UTC) - timedelta(hours=age_hours)).isoformat()
    assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(1, timestamp=stamp)).status_code == 202
    if end:
        final = update_body(2, status=end, timestamp=stamp)
        final["bytes_transferred"] = 5000
        assert agent.post(f"/telemetry/backup/{job_id}", json=final).status_code == 200
    return job_id


def _machines(viewer, **params) -> dict:
    response = viewer.get("/machines", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_counters_follow_jobs_as_they_are_created_and_end(agent, viewer, unique):
    vm = f"counters-{unique}"
    _job(agent, vm, end="completed", age_hours=30)
    _job(agent, vm, end="failed", age_hours=20)
    last = _job(agent, vm, end=None)
    [row] = _machines(viewer, search=vm)["machines"]
    assert (row["total_backups"], row["successful"], row["failed"], row["running"]) == (3, 1, 1, 1)
    assert row["success_rate"] == 50.0 and row["total_protected_bytes"] == 5000
    assert row["last_backup"]["backup_id"] == last and row["last_backup"]["status"] == "running"
    # The last success was 30 h ago, past the default objective of 24 h.
    assert row["rpo"]["out_of_rpo"] is True and 29 * 3600 < row["rpo"]["age_seconds"] < 31 * 3600


def test_each_machine_may_have_its_own_objective_set_by_an_operator(agent, viewer, operator, unique):
    vm = f"own-rpo-{unique}"
    _job(agent, vm, end="completed", age_hours=30)
    assert viewer.put(f"/machines/{vm}/rpo", json={"rpo_seconds": 7 * 86400}).status_code == 403
    # An agent token lives on every protected host: it may not change any machine's objective.
    assert agent.put(f"/machines/{vm}/rpo", json={"rpo_seconds": 7 * 86400}).status_code == 403
    answer = operator.put(f"/machines/{vm}/rpo", json={"rpo_seconds": 2 * 86400})
    assert answer.status_code == 200 and answer.json()["rpo"]["out_of_rpo"] is False
    machine = viewer.get(f"/machines/{vm}").json()
    assert machine["rpo"]["rpo_seconds"] == 2 * 86400 and machine["rpo"]["rpo_source"] == "machine"
    assert operator.put(f"/machines/{vm}/rpo", json={"rpo_seconds": None}).json()["rpo"]["out_of_rpo"] is True
    for bad in ({"rpo_seconds": 10}, {"rpo_seconds": "1d"}, {"rpo": 3600}):
        assert operator.put(f"/machines/{vm}/rpo", json=bad).status_code == 400
    assert operator.put(f"/machines/no-such-{unique}/rpo", json={"rpo_seconds": 3600}).status_code == 404


def test_the_worst_come_first_and_pages_cover_every_machine_once(agent, viewer, unique):
    prefix = f"page-{unique}"
    _job(agent, f"{prefix}-ok", end="completed", age_hours=1)
    _job(agent, f"{prefix}-late", end="completed", age_hours=50)
    _job(agent, f"{prefix}-never", end="failed", age_hours=2)
    _job(agent, f"{prefix}-later", end="completed", age_hours=30)
    ranked = [m["vm_name"] for m in _machines(viewer, search=prefix)["machines"]]
    assert ranked == [f"{prefix}-never", f"{prefix}-late", f"{prefix}-later", f"{prefix}-ok"]
    out = _machines(viewer, search=prefix, out_of_rpo="true")
    assert out["total"] == 3 and f"{prefix}-ok" not in [m["vm_name"] for m in out["machines"]]
    pages = [_machines(viewer, search=prefix, limit=3, offset=o, sort="vm_name", order="asc") for o in (0, 3)]
    names = [m["vm_name"] for p in pages for m in p["machines"]]
    assert names == sorted(ranked) and pages[0]["total"] == 4


def test_search_is_a_substring_and_its_wildcards_are_literal(agent, viewer, unique):
    _job(agent, f"wild_{unique}%", end="completed")
    _job(agent, f"wildX{unique}Y", end="completed")
    assert [m["vm_name"] for m in _machines(viewer, search=f"wild_{unique}%")["machines"]] == [f"wild_{unique}%"]
    assert _machines(viewer, search=f"{unique}")["total"] == 2


def test_bad_paging_and_sorting_are_400(viewer):
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"sort": "size"}, {"order": "up"}):
        assert viewer.get("/machines", params=params).status_code == 400, params
