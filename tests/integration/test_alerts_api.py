"""The alerts API on the real stack: roles, filters and pages of alerts the real evaluator raised, acknowledging,
silences (what they withhold and release), rule overrides that change evaluation, and registered machines."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select, text

from pipeline.alerts.evaluator import AlertEvaluator
from pipeline.alerts.heartbeats import HeartbeatStore
from pipeline.alerts.store import AlertStore
from pipeline.db.tables import alert_notifications, alerts, machines
from tests.support.probes import update_body

HOUR = timedelta(hours=1)
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


@pytest.fixture
def evaluator(engine, settings):
    """The scheduler's evaluator, run by hand; a webhook channel is configured so that the outbox fills."""
    alert_settings = dataclasses.replace(settings.alerts, hold_down=0.0, webhook_url="http://127.0.0.1:9/hook")
    return AlertEvaluator(AlertStore(engine), HeartbeatStore(engine), alert_settings, rpo_default=86_400)


def _job(agent, vm: str, job_type: str = "backup") -> str:
    body = {"vm_name": vm, "backup_type": "full", "repository_id": "repo-alerts-api", "job_type": job_type}
    response = agent.post("/backups", json=body)
    assert response.status_code == 201, response.text
    return response.json()["backup_id"]


def _run(agent, vm: str, status: str, *, ago: timedelta = HOUR, job_type: str = "backup") -> str:
    job_id = _job(agent, vm, job_type)
    start = datetime.now(UTC) - ago
    first = update_body(1, total=10, timestamp=start.isoformat())
    assert agent.post(f"/telemetry/{job_type}/{job_id}", json=first).status_code == 202
    final = update_body(10, total=10, status=status, timestamp=(start + timedelta(seconds=60)).isoformat())
    assert agent.post(f"/telemetry/{job_type}/{job_id}", json=final).status_code == 200
    return job_id


def _alerts(client, **params) -> dict:
    response = client.get("/alerts", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _alert_id(engine, key: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(select(alerts.c.id).where(alerts.c.alert_key == key)).scalar()


def _outbox(engine, alert_id: int) -> list[str]:
    with engine.connect() as conn:
        n = alert_notifications.c
        return list(conn.execute(select(n.event).where(n.alert_id == alert_id).order_by(n.id)).scalars())


def _failed_alert(agent, engine, evaluator, vm: str) -> int:
    _run(agent, vm, "failed")
    evaluator.run_once()
    alert_id = _alert_id(engine, f"job_failed:{vm}:backup")
    assert alert_id is not None
    return alert_id


# --- roles ---------------------------------------------------------------------------------------------


def test_every_alert_endpoint_answers_each_role_exactly(api, stack, agent, engine, evaluator, unique):
    alert_id = _failed_alert(agent, engine, evaluator, f"roles-{unique}")
    tokens = {"none": None, "viewer": stack.viewer_token, "agent": stack.agent_token, "operator": stack.operator_token}
    silence = {"vm_name": f"roles-{unique}", "duration_seconds": 600, "reason": "roles test", "created_by": "t"}
    with httpx.Client(base_url=f"{api}/api/v1", timeout=30) as client:

        def call(method: str, path: str, token: str | None, body: dict | None = None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return client.request(method, path, json=body, headers=headers)

        made = call("POST", "/silences", stack.operator_token, silence).json()["id"]
        # (method, path, body, who may call it, its status then); tokens go in this order, so the first
        # successful registration is the operator's (201).
        calls = [
            ("GET", "/alerts", None, "any", 200),
            ("GET", f"/alerts/{alert_id}", None, "any", 200),
            ("POST", f"/alerts/{alert_id}/acknowledge", {"by": "t", "comment": "roles"}, "operator", 200),
            ("GET", "/silences", None, "any", 200),
            ("POST", "/silences", silence, "operator", 201),
            ("DELETE", f"/silences/{made}?by=t", None, "operator", 200),
            ("GET", "/alert-rules", None, "any", 200),
            ("PUT", "/alert-rules", {"rule": "job_stalled", "vm_name": f"roles-{unique}", "updated_by": "t"},
             "operator", 200),
            ("PUT", f"/machines/roles-new-{unique}", {"cpu_count": 2}, "operator", 201),
            ("PUT", f"/machines/roles-{unique}/rpo", {"rpo_seconds": 7200}, "operator", 200),
        ]  # fmt: skip
        for method, path, body, who, success in calls:
            for name, token in tokens.items():
                if name == "none":
                    expected = 401
                elif who == "any" or name == who:
                    expected = success
                else:
                    expected = 403
                answer = call(method, path, token, body)
                assert answer.status_code == expected, (method, path, name, answer.text)
                if expected == 403:
                    assert "needs an operator token" in answer.json()["detail"], answer.text
        # Operators may not do an agent's writes.
        job = {"vm_name": f"roles-{unique}", "backup_type": "full", "repository_id": "r"}
        assert call("POST", "/backups", stack.operator_token, job).status_code == 403
        assert call("POST", "/telemetry/backup/x-1", stack.operator_token, update_body(1)).status_code == 403


# --- reading alerts --------------------------------------------------------------------------------------


def test_alerts_are_filtered_and_paged_firing_and_severest_first(agent, viewer, engine, evaluator, unique):
    vm = f"page-{unique}"
    _run(agent, vm, "completed", ago=30 * HOUR)  # the last success, 30 h ago: past the default RPO of a day
    for job_type in ("backup", "restore", "replication"):
        _run(agent, vm, "failed", job_type=job_type)
    pending = _job(agent, vm)
    with engine.begin() as conn:  # created 40 minutes ago, and no telemetry since
        conn.execute(text("UPDATE backup_jobs SET created_at = UTC_TIMESTAMP(6) - INTERVAL 40 MINUTE WHERE id = :id"),
                     {"id": pending})  # fmt: skip
    evaluator.run_once()
    assert agent.post(f"/telemetry/backup/{pending}", json=update_body(1)).status_code == 202
    evaluator.run_once()  # its first telemetry resolves job_pending_too_long

    page = _alerts(viewer, vm_name=vm)
    assert page["total"] == 5
    assert [(a["rule"], a["state"], a["severity"]) for a in page["alerts"]][3:] == [
        ("rpo", "firing", "warning"),
        ("job_pending_too_long", "resolved", "warning"),
    ]
    assert {a["job_type"] for a in page["alerts"][:3]} == {"backup", "restore", "replication"}
    order = [(a["state"] != "firing", SEVERITY_RANK[a["severity"]]) for a in page["alerts"]]
    assert order == sorted(order)
    assert page["firing"] == {"critical": 3, "warning": 1, "info": 0}
    pages = [_alerts(viewer, vm_name=vm, limit=2, offset=offset) for offset in (0, 2, 4)]
    assert [a["id"] for p in pages for a in p["alerts"]] == [a["id"] for a in page["alerts"]]
    assert all(p["total"] == 5 for p in pages)

    assert [a["rule"] for a in _alerts(viewer, vm_name=vm, state="resolved")["alerts"]] == ["job_pending_too_long"]
    assert _alerts(viewer, vm_name=vm, severity="warning")["total"] == 2
    failed = _alerts(viewer, vm_name=vm, rule="job_failed", state="firing")
    assert failed["total"] == 3 and failed["firing"] == {"critical": 3, "warning": 0, "info": 0}
    assert _alerts(viewer, vm_name=f"nothing-{unique}") == {
        "alerts": [],
        "total": 0,
        "firing": {"critical": 0, "warning": 0, "info": 0},
    }
    first = page["alerts"][0]
    assert first["summary"].endswith("failed") and first["silenced"] is False and first["acknowledgement"] is None
    assert first["dashboard_url"] == f"http://127.0.0.1:5006/?vm=page-{unique}"
    for bad in ({"state": "open"}, {"severity": "major"}, {"rule": "nope"}, {"limit": 0}, {"limit": 1001},
                {"offset": -1}, {"vm_name": ""}):  # fmt: skip
        assert viewer.get("/alerts", params=bad).status_code == 400, bad

    resolved = next(a for a in page["alerts"] if a["state"] == "resolved")
    details = viewer.get(f"/alerts/{resolved['id']}").json()
    assert [t["kind"] for t in details["transitions"]] == ["fired", "resolved"]
    assert [(d["channel"], d["event"], d["state"]) for d in details["deliveries"]] == [
        ("webhook", "firing", "pending"),
        ("webhook", "resolved", "pending"),
    ]
    assert details["deliveries"][0]["idempotency_key"] == f"sendense-alert-{resolved['id']}-1"
    assert viewer.get("/alerts/999999999999").status_code == 404


def test_an_operator_acknowledges_an_alert_with_a_comment(agent, viewer, operator, engine, evaluator, unique):
    alert_id = _failed_alert(agent, engine, evaluator, f"ack-{unique}")
    answer = operator.post(f"/alerts/{alert_id}/acknowledge", json={"by": "jane", "comment": "agent restarted"})
    assert answer.status_code == 200, answer.text
    ack = answer.json()["acknowledgement"]
    assert (ack["by"], ack["comment"]) == ("jane", "agent restarted")
    assert abs(datetime.fromisoformat(ack["at"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert viewer.get(f"/alerts/{alert_id}").json()["acknowledgement"] == ack
    [listed] = _alerts(viewer, vm_name=f"ack-{unique}")["alerts"]
    assert listed["acknowledgement"] == ack and listed["state"] == "firing", "acknowledged is still firing"
    again = operator.post(f"/alerts/{alert_id}/acknowledge", json={"by": "joe"}).json()["acknowledgement"]
    assert (again["by"], again["comment"]) == ("joe", "")
    for bad in ({"by": ""}, {"comment": "x"}, {"by": "a", "comment": "x" * 1001}, {"by": "a\x01b"},
                {"by": "a", "extra": 1}):  # fmt: skip
        assert operator.post(f"/alerts/{alert_id}/acknowledge", json=bad).status_code == 400, bad
    assert operator.post("/alerts/999999999999/acknowledge", json={"by": "jane"}).status_code == 404


# --- silences --------------------------------------------------------------------------------------------


def test_a_silenced_machine_alerts_but_notifies_nothing_until_the_silence_ends(
    agent, viewer, operator, engine, evaluator, unique
):
    vm = f"silenced-{unique}"
    made = operator.post(
        "/silences", json={"vm_name": vm, "duration_seconds": 3600, "reason": "disk swap", "created_by": "jane"}
    )
    assert made.status_code == 201, made.text
    silence = made.json()
    assert silence["active"] is True and silence["ended_at"] is None and silence["created_by"] == "jane"
    assert datetime.fromisoformat(silence["ends_at"]) - datetime.fromisoformat(silence["starts_at"]) == HOUR
    assert silence["id"] in [s["id"] for s in viewer.get("/silences", params={"active": "true"}).json()["silences"]]

    alert_id = _failed_alert(agent, engine, evaluator, vm)
    [alert] = _alerts(viewer, vm_name=vm)["alerts"]
    assert alert["state"] == "firing" and alert["silenced"] is True
    assert viewer.get(f"/alerts/{alert_id}").json()["transitions"][0]["silenced"] is True
    evaluator.run_once()
    assert _outbox(engine, alert_id) == [], "a silenced alert sends nothing"

    ended = operator.delete(f"/silences/{silence['id']}", params={"by": "joe"})
    assert ended.status_code == 200, ended.text
    assert ended.json()["active"] is False and ended.json()["ended_by"] == "joe" and ended.json()["ended_at"]
    assert operator.delete(f"/silences/{silence['id']}", params={"by": "again"}).json()["ended_by"] == "joe"
    inactive = viewer.get("/silences", params={"active": "false", "limit": 1000}).json()["silences"]
    assert silence["id"] in [s["id"] for s in inactive], "an ended silence is kept"
    assert _alerts(viewer, vm_name=vm)["alerts"][0]["silenced"] is False
    evaluator.run_once()
    assert _outbox(engine, alert_id) == ["firing"], "what was withheld is notified once the silence ends"
    assert operator.delete("/silences/999999999999", params={"by": "joe"}).status_code == 404


def test_a_silence_of_one_rule_leaves_the_machines_other_alerts_alone(agent, viewer, operator, engine, evaluator,
                                                                      unique):  # fmt: skip
    vm = f"rule-silence-{unique}"
    body = {"vm_name": vm, "rule": "rpo", "ends_at": (datetime.now(UTC) + HOUR).isoformat(), "reason": "r",
            "created_by": "jane"}  # fmt: skip
    assert operator.post("/silences", json=body).status_code == 201
    _run(agent, vm, "completed", ago=30 * HOUR)
    _run(agent, vm, "failed")
    evaluator.run_once()
    silenced = {a["rule"]: a["silenced"] for a in _alerts(viewer, vm_name=vm)["alerts"]}
    assert silenced == {"rpo": True, "job_failed": False}
    assert _outbox(engine, _alert_id(engine, f"rpo:{vm}")) == []
    assert _outbox(engine, _alert_id(engine, f"job_failed:{vm}:backup")) == ["firing"]


def test_silences_are_refused_unless_they_silence_something_for_a_while(operator, unique):
    base = {"reason": "r", "created_by": "jane"}
    soon = (datetime.now(UTC) + HOUR).isoformat()
    bad = [
        {**base, "duration_seconds": 600},  # neither a machine nor a rule
        {**base, "vm_name": "v", "duration_seconds": 600, "ends_at": soon},  # both ends
        {**base, "vm_name": "v"},  # no end
        {**base, "vm_name": "v", "duration_seconds": 30},
        {**base, "vm_name": "v", "ends_at": (datetime.now(UTC) - HOUR).isoformat()},
        {**base, "vm_name": "v", "ends_at": "2030-01-01T00:00:00"},  # no time zone
        {**base, "vm_name": "v", "starts_at": soon, "ends_at": soon},
        {**base, "rule": "no_such_rule", "duration_seconds": 600},
        {"vm_name": "v", "duration_seconds": 600, "created_by": "jane", "reason": ""},
        {**base, "vm_name": "a/b", "duration_seconds": 600},
        {**base, "vm_name": "v", "duration_seconds": 600, "silenced": True},
    ]
    for body in bad:
        answer = operator.post("/silences", json=body)
        assert answer.status_code == 400, (body, answer.text)
    later = operator.post(
        "/silences",
        json={**base, "rule": "job_stalled", "vm_name": f"later-{unique}", "starts_at": soon, "duration_seconds": 600},
    ).json()
    assert later["active"] is False and later["ended_at"] is None, "not begun yet"


# --- rules -----------------------------------------------------------------------------------------------


def test_a_machine_override_disables_job_failed_for_that_machine_only(agent, viewer, operator, engine, evaluator,
                                                                       unique):  # fmt: skip
    quiet, loud = f"quiet-{unique}", f"loud-{unique}"
    body = {"rule": "job_failed", "vm_name": quiet, "enabled": False, "updated_by": "jane"}
    answer = operator.put("/alert-rules", json=body)
    assert answer.status_code == 200, answer.text
    rule = answer.json()
    assert rule["rule"] == "job_failed" and rule["enabled"] is True, "every other machine keeps it"
    [override] = [o for o in rule["overrides"] if o["vm_name"] == quiet]
    assert override["enabled"] is False and override["updated_by"] == "jane" and "params" not in override
    _run(agent, quiet, "failed")
    _run(agent, loud, "failed")
    evaluator.run_once()
    assert _alert_id(engine, f"job_failed:{quiet}:backup") is None
    assert _alerts(viewer, vm_name=loud, rule="job_failed")["total"] == 1

    removed = operator.put("/alert-rules", json={"rule": "job_failed", "vm_name": quiet, "updated_by": "jane"})
    assert quiet not in [o["vm_name"] for o in removed.json()["overrides"]]
    evaluator.run_once()
    assert _alerts(viewer, vm_name=quiet, rule="job_failed")["alerts"][0]["state"] == "firing"


def test_a_global_override_raises_the_rpo_critical_threshold(agent, viewer, operator, engine, evaluator, unique):
    vm = f"ratio-{unique}"
    _run(agent, vm, "completed", ago=30 * HOUR)
    assert operator.put(f"/machines/{vm}/rpo", json={"rpo_seconds": 12 * 3600}).status_code == 200  # 2.5 × its RPO
    try:
        raised = operator.put("/alert-rules", json={"rule": "rpo", "params": {"critical_ratio": 3}, "updated_by": "j"})
        assert raised.status_code == 200, raised.text
        assert raised.json()["params"] == {"critical_ratio": 3.0}
        assert raised.json()["overrides"][0]["vm_name"] is None
        evaluator.run_once()
        assert _alerts(viewer, vm_name=vm, rule="rpo")["alerts"][0]["severity"] == "warning"
    finally:
        operator.put("/alert-rules", json={"rule": "rpo", "updated_by": "j"})
    rules = {r["rule"]: r for r in viewer.get("/alert-rules").json()["rules"]}
    assert rules["rpo"]["params"] == {"critical_ratio": 2.0}
    evaluator.run_once()
    assert _alerts(viewer, vm_name=vm, rule="rpo")["alerts"][0]["severity"] == "critical"


def test_rule_overrides_take_only_each_rules_own_params_within_bounds(viewer, operator, unique):
    vm = f"bounds-{unique}"
    bad = [
        {"rule": "job_stalled", "params": {"factor": 3}},
        {"rule": "job_stalled", "params": {"minutes": 0}},
        {"rule": "job_stalled", "params": {"minutes": "10"}},
        {"rule": "job_failed", "params": {}},
        {"rule": "job_overrunning", "params": {"window_end": "25:00"}},
        {"rule": "job_overrunning", "params": {"factor": 1}},
        {"rule": "job_overrunning", "params": {"min_runs": 20, "runs": 5}},
        {"rule": "job_stalled", "channels": ["sms"]},
        {"rule": "job_stalled", "severity": "major"},
        {"rule": "no_such_rule"},
        {"rule": "job_stalled", "vm_name": ""},
    ]
    for body in bad:
        answer = operator.put("/alert-rules", json={"vm_name": vm, "updated_by": "jane", **body})
        assert answer.status_code == 400, (body, answer.text)
    assert operator.put("/alert-rules", json={"rule": "job_stalled", "vm_name": vm}).status_code == 400  # who
    good = {
        "rule": "job_overrunning",
        "vm_name": vm,
        "severity": "critical",
        "params": {"factor": 3, "window_end": "06:30"},
        "channels": ["email", "webhook"],
        "updated_by": "jane",
    }
    rule = operator.put("/alert-rules", json=good).json()
    [override] = [o for o in rule["overrides"] if o["vm_name"] == vm]
    assert override["params"] == {"factor": 3.0, "window_end": "06:30"} and override["severity"] == "critical"
    assert override["channels"] == ["email", "webhook"]
    assert rule["params"]["factor"] == 2.0, "the override is this machine's only"
    listed = viewer.get("/alert-rules").json()
    assert [r["rule"] for r in listed["rules"]][:3] == ["job_failed", "job_anomalous", "rpo"]
    assert set(listed["channels"]) == {"webhook", "email", "alertmanager"}
    assert listed["channels"]["email"]["min_severity"] == "warning"
    operator.put("/alert-rules", json={"rule": "job_overrunning", "vm_name": vm, "updated_by": "jane"})


# --- machines --------------------------------------------------------------------------------------------


def test_a_registered_machine_without_a_backup_within_its_rpo_is_never_backed_up(
    agent, viewer, operator, engine, evaluator, unique
):
    vm = f"registered {unique} (db)"
    body = {"repository_id": "repo-9", "cpu_count": 8, "os_type": "linux", "rpo_seconds": 3600}
    first = operator.put(f"/machines/{vm}", json=body)
    assert first.status_code == 201, first.text
    machine = first.json()
    assert machine["total_backups"] == 0 and machine["machine"]["cpu_count"] == 8
    assert machine["rpo"]["rpo_seconds"] == 3600 and machine["rpo"]["rpo_source"] == "machine"
    again = operator.put(f"/machines/{vm}", json={"memory_mb": 32768})
    assert again.status_code == 200 and again.json()["machine"]["cpu_count"] == 8, "details left out are kept"
    assert again.json()["machine"]["memory_mb"] == 32768 and again.json()["rpo"]["rpo_seconds"] == 3600
    evaluator.run_once()
    assert _alert_id(engine, f"never_backed_up:{vm}") is None, "registered a moment ago, within its RPO"

    with engine.begin() as conn:  # two hours pass
        conn.execute(text("UPDATE machines SET created_at = UTC_TIMESTAMP(6) - INTERVAL 2 HOUR WHERE vm_name = :vm"),
                     {"vm": vm})  # fmt: skip
    evaluator.run_once()
    [alert] = _alerts(viewer, vm_name=vm)["alerts"]
    assert alert["rule"] == "never_backed_up" and alert["state"] == "firing" and "registered" in alert["summary"]
    _run(agent, vm, "completed", ago=timedelta(minutes=5))
    evaluator.run_once()
    assert _alerts(viewer, vm_name=vm, rule="never_backed_up")["alerts"][0]["state"] == "resolved"


def test_registering_a_machine_known_from_its_jobs_keeps_its_counts(agent, operator, engine, unique):
    vm = f"known-{unique}"
    _run(agent, vm, "completed")
    answer = operator.put(f"/machines/{vm}", json={"protection_flow": "nightly", "rpo_seconds": None})
    assert answer.status_code == 200, answer.text
    assert answer.json()["total_backups"] == 1 and answer.json()["machine"]["protection_flow"] == "nightly"
    assert answer.json()["repository_id"] == "repo-alerts-api"
    with engine.connect() as conn:
        row = conn.execute(text("SELECT total_jobs, successful FROM machines WHERE vm_name = :vm"), {"vm": vm}).one()
    assert tuple(row) == (1, 1)
    for path, bad in (
        (f"/machines/{vm}", {"rpo_seconds": 10}),
        (f"/machines/{vm}", {"cpu_count": "8"}),
        (f"/machines/{vm}", {"name": "x"}),
        ("/machines/bad%01name", {}),
        ("/machines/" + "x" * 256, {}),
    ):
        assert operator.put(path, json=bad).status_code == 400, (path, bad)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).where(machines.c.vm_name == "bad\x01name")).scalar_one() == 0
