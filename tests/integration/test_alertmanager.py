"""A real Alertmanager (infra/alertmanager.sh) takes what the pipeline posts, groups it, routes it to its
webhook receiver, and shows it resolved once the pipeline resolves it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import yaml
from sqlalchemy import select

from pipeline.alerts.delivery.alertmanager import AlertmanagerChannel
from pipeline.alerts.evaluator import AlertEvaluator
from pipeline.alerts.heartbeats import HeartbeatStore
from pipeline.alerts.store import AlertStore, DueNotification
from pipeline.db.tables import alerts
from tests.conftest import OUTPUT_DIR
from tests.support.devstack import PROJECT_DIR, DevStack
from tests.support.probes import update_body, wait_for

AM_PORT = int(os.environ.get("SENDENSE_TEST_ALERTMANAGER_PORT", "19093"))


class Receiver(ThreadingHTTPServer):
    """Alertmanager's webhook receiver: keeps every notification body it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.bodies: list[dict] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alertmanager"

    def groups(self, vm: str, status: str) -> list[dict]:
        with self.lock:
            return [b for b in self.bodies if b["groupLabels"].get("vm_name") == vm and b["status"] == status]


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the http.server name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.bodies.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def alertmanager(stack: DevStack, receiver: Receiver) -> Iterator[str]:
    """Alertmanager routing every alert, grouped by rule and machine, to the receiver; quick to notify."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    config = OUTPUT_DIR / "alertmanager-test.yml"
    config.write_text(
        f"""route:
  receiver: test-hook
  group_by: [alertname, vm_name]
  group_wait: 2s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test-hook
    webhook_configs:
      - url: {receiver.url}
        send_resolved: true
""",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        **stack.env(),
        "SENDENSE_ALERTMANAGER_PORT": str(AM_PORT),
        "SENDENSE_ALERTMANAGER_CONFIG": str(config),
    }
    script = str(PROJECT_DIR / "infra" / "alertmanager.sh")
    subprocess.run(["bash", script, "start"], env=env, check=True)
    yield f"http://127.0.0.1:{AM_PORT}"
    subprocess.run(["bash", script, "stop"], env=env, check=True)


@pytest.fixture
def alert_settings(settings, alertmanager: str):
    # Only this channel, and resolves notified at once.
    return dataclasses.replace(
        settings.alerts, hold_down=0.0, alertmanager_url=alertmanager, webhook_url="", smtp_host="", email_to=()
    )


@pytest.fixture
def channel(alert_settings, engine) -> Iterator[AlertmanagerChannel]:
    channel = AlertmanagerChannel(alert_settings, engine)
    yield channel
    channel.close()


def _job(agent, vm: str, job_type: str) -> str:
    body = {"vm_name": vm, "backup_type": "full", "repository_id": "repo-am", "job_type": job_type}
    response = agent.post("/backups", json=body)
    assert response.status_code == 201, response.text
    return response.json()["backup_id"]


def _run(agent, vm: str, job_type: str, start: datetime, status: str) -> None:
    job_id = _job(agent, vm, job_type)
    for t in range(3):
        body = update_body(t + 1, total=4, timestamp=(start + timedelta(seconds=10 * t)).isoformat())
        assert agent.post(f"/telemetry/{job_type}/{job_id}", json=body).status_code == 202
    final = update_body(4, total=4, status=status, timestamp=(start + timedelta(seconds=40)).isoformat())
    assert agent.post(f"/telemetry/{job_type}/{job_id}", json=final).status_code == 200


def _deliver(engine, channel: AlertmanagerChannel) -> list[str]:
    """What a sender does with the channel's rows of the outbox; returns the outcomes."""
    outcomes = []
    with AlertStore(engine).claim_due("alertmanager", limit=1000) as claim:
        for row in claim.rows:
            result = channel.deliver(row)
            outcomes.append(result.state)
            if result.state == "sent":
                claim.sent(row.id)
            elif result.state == "retry":
                claim.retry(row.id, result.error or "", 1.0)
            else:
                claim.refused(row.id, result.error or "")
    return outcomes


def _active(alertmanager: str, vm: str) -> list[dict]:
    response = httpx.get(f"{alertmanager}/api/v2/alerts", params={"filter": f'vm_name="{vm}"'}, timeout=10)
    response.raise_for_status()
    return [a for a in response.json() if a["status"]["state"] == "active"]


def test_alertmanager_groups_routes_and_resolves_what_the_pipeline_sends(
    agent, engine, alertmanager, receiver, alert_settings, channel, unique
):
    vm_a, vm_b = f"am-a {unique}", f"am-b-{unique}"
    evaluator = AlertEvaluator(AlertStore(engine), HeartbeatStore(engine), alert_settings, rpo_default=86_400)
    start = datetime.now(UTC) - timedelta(hours=1)
    _run(agent, vm_a, "backup", start, "failed")
    _run(agent, vm_a, "replication", start, "failed")
    _run(agent, vm_b, "backup", start, "failed")
    evaluator.run_once()
    assert set(_deliver(engine, channel)) == {"sent"}

    shown = {a["labels"]["alert_key"]: a for a in _active(alertmanager, vm_a) + _active(alertmanager, vm_b)}
    assert sorted(shown) == sorted(
        [f"job_failed:{vm_a}:backup", f"job_failed:{vm_a}:replication", f"job_failed:{vm_b}:backup"]
    )
    labels = shown[f"job_failed:{vm_a}:replication"]["labels"]
    assert labels == {
        "alertname": "job_failed",
        "severity": "critical",
        "vm_name": vm_a,
        "job_type": "replication",
        "alert_key": f"job_failed:{vm_a}:replication",
    }
    a = shown[f"job_failed:{vm_a}:replication"]
    assert a["annotations"]["summary"].startswith(f"Replication of {vm_a} failed")
    assert a["annotations"]["idempotency_key"].startswith("sendense-alert-")
    ends = datetime.fromisoformat(a["endsAt"])
    assert timedelta(seconds=230) < ends - datetime.now(UTC) <= timedelta(seconds=240), "4 × the 60 s resend"

    # Grouped by rule and machine: one notification with both of vm_a's alerts, another with vm_b's.
    wait_for(lambda: receiver.groups(vm_a, "firing") and receiver.groups(vm_b, "firing"), 20, what="firing groups")
    [first_a] = receiver.groups(vm_a, "firing")[:1]
    assert first_a["groupLabels"] == {"alertname": "job_failed", "vm_name": vm_a}
    assert sorted(x["labels"]["job_type"] for x in first_a["alerts"]) == ["backup", "replication"]
    assert {x["labels"]["vm_name"] for b in receiver.groups(vm_b, "firing") for x in b["alerts"]} == {vm_b}

    # The re-post keeps them alive: later endsAt, same alerts.
    threading.Event().wait(1.1)
    reposted = channel.resend()
    assert reposted >= 3
    again = {x["labels"]["alert_key"]: x for x in _active(alertmanager, vm_a)}
    assert datetime.fromisoformat(again[f"job_failed:{vm_a}:replication"]["endsAt"]) > ends
    # An alert an evaluation is changing (its row locked) is left to the next re-post.
    with engine.connect() as conn, conn.begin():
        conn.execute(select(alerts.c.id).where(alerts.c.alert_key == f"job_failed:{vm_b}:backup").with_for_update())
        assert channel.resend() == reposted - 1

    later = start + timedelta(minutes=10)
    _run(agent, vm_a, "backup", later, "completed")
    _run(agent, vm_a, "replication", later, "completed")
    _run(agent, vm_b, "backup", later, "completed")
    evaluator.run_once()
    assert set(_deliver(engine, channel)) == {"sent"}
    assert _active(alertmanager, vm_a) == [] and _active(alertmanager, vm_b) == []
    wait_for(lambda: receiver.groups(vm_a, "resolved") and receiver.groups(vm_b, "resolved"), 20, what="resolves")
    [resolved_a] = receiver.groups(vm_a, "resolved")[:1]
    assert sorted(x["labels"]["job_type"] for x in resolved_a["alerts"]) == ["backup", "replication"]
    assert {x["status"] for x in resolved_a["alerts"]} == {"resolved"}

    channel.resend()  # resolved alerts are not posted again
    assert _active(alertmanager, vm_a) == [] and _active(alertmanager, vm_b) == []
    threading.Event().wait(2.5)  # past the group interval: anything more would have come by now
    for vm in (vm_a, vm_b):
        assert (len(receiver.groups(vm, "firing")), len(receiver.groups(vm, "resolved"))) == (1, 1), vm


def _notification(state: str, started: datetime, resolved: datetime | None = None) -> DueNotification:
    payload = {
        "idempotency_key": "sendense-alert-0-1", "alert_id": 0, "rule": "job_failed", "state": state,
        "severity": "critical", "vm_name": "am-nowhere", "job_id": None, "job_type": "backup", "summary": "test",
        "started_at": started.isoformat(), "resolved_at": resolved.isoformat() if resolved else None,
        "notified_at": started.isoformat(), "dashboard_url": "http://127.0.0.1:5006/", "api_path": "/api/v1/alerts/0",
    }  # fmt: skip
    return DueNotification(0, 0, "alertmanager", state, "sendense-alert-0-1", payload, 0)


def test_an_alertmanager_that_is_down_is_retried_and_a_bad_alert_refused(engine, alert_settings):
    now = datetime.now(UTC)
    down = AlertmanagerChannel(dataclasses.replace(alert_settings, alertmanager_url="http://127.0.0.1:9"), engine)
    try:
        result = down.deliver(_notification("firing", now))
        assert result.state == "retry" and "infra/alertmanager.sh start" in result.error
    finally:
        down.close()
    up = AlertmanagerChannel(alert_settings, engine)
    try:  # resolved before it started: Alertmanager answers 400, which no retry can change
        refused = up.deliver(_notification("resolved", now, resolved=now - timedelta(hours=1)))
        assert refused.state == "refused" and "400" in refused.error
    finally:
        up.close()


def test_the_scheduler_reposts_to_alertmanager_only_when_it_is_configured(settings, alert_settings):
    from pipeline.scheduler import build_scheduler

    with_am, jobs = build_scheduler(dataclasses.replace(settings, alerts=alert_settings))
    try:
        assert with_am.get_job("alertmanager-resend").trigger.interval == timedelta(seconds=60)
    finally:
        jobs.close()
    unconfigured = dataclasses.replace(alert_settings, alertmanager_url="")
    without, jobs = build_scheduler(dataclasses.replace(settings, alerts=unconfigured))
    try:
        assert without.get_job("alertmanager-resend") is None
    finally:
        jobs.close()


def _documented(first_line: str) -> str:
    """The fenced YAML block of docs/alerts.md that starts with `first_line`."""
    text = (PROJECT_DIR / "docs" / "alerts.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    [block] = [b for b in blocks if b.startswith(first_line + "\n")]
    return block


def test_the_documented_alertmanager_config_is_valid(tmp_path):
    config = tmp_path / "alertmanager.yml"
    config.write_text(_documented("# alertmanager.yml"), encoding="utf-8")
    subprocess.run(["amtool", "check-config", str(config)], check=True, capture_output=True)


def test_the_documented_prometheus_rules_fire_when_evaluations_fail_or_stop(tmp_path):
    rules_text = _documented("# sendense-rules.yml")
    (tmp_path / "sendense-rules.yml").write_text(rules_text, encoding="utf-8")
    rules = {r["alert"]: r for r in yaml.safe_load(rules_text)["groups"][0]["rules"]}

    def firing(name: str) -> list[dict]:
        return [{"exp_labels": rules[name]["labels"], "exp_annotations": rules[name]["annotations"]}]

    runs = 'sendense_scheduler_runs_total{job="alerts",result="%s"}'
    age = 'sendense_scheduler_last_run_age_seconds{job="alerts"}'
    tests = {
        "rule_files": ["sendense-rules.yml"],
        "evaluation_interval": "15s",
        "tests": [
            {  # evaluations succeed for 5 minutes, then MySQL goes down: only outages from then on
                "interval": "15s",
                "input_series": [
                    {"series": runs % "ok", "values": "0+1x20 20x40"},
                    {"series": runs % "outage", "values": "0x20 1+1x40"},
                    {"series": age, "values": "0x60"},
                ],
                "alert_rule_test": [
                    {"eval_time": "4m", "alertname": "SendenseAlertEvaluationFailing", "exp_alerts": []},
                    {"eval_time": "9m", "alertname": "SendenseAlertEvaluationFailing", "exp_alerts": []},
                    {
                        "eval_time": "14m",
                        "alertname": "SendenseAlertEvaluationFailing",
                        "exp_alerts": firing("SendenseAlertEvaluationFailing"),
                    },  # fmt: skip
                    {"eval_time": "14m", "alertname": "SendenseSchedulerDown", "exp_alerts": []},
                ],
            },
            {  # the scheduler stops: the age of its last evaluation grows
                "interval": "15s",
                "input_series": [{"series": age, "values": "0+15x40"}],
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "SendenseSchedulerDown", "exp_alerts": []},
                    {
                        "eval_time": "6m",
                        "alertname": "SendenseSchedulerDown",
                        "exp_alerts": firing("SendenseSchedulerDown"),
                    },  # fmt: skip
                ],
            },
        ],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests), encoding="utf-8")
    result = subprocess.run(["promtool", "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
