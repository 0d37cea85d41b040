"""Alert rules on the real stack: each fires on its condition, resolves on recovery, notifies through the outbox."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from pipeline.alerts.evaluator import AlertEvaluator
from pipeline.alerts.heartbeats import HeartbeatStore
from pipeline.alerts.store import AlertStore
from pipeline.db.tables import alert_notifications, alert_transitions, alerts
from pipeline.jobs.store import JobStore
from tests.support.probes import update_body

HOUR = timedelta(hours=1)


@pytest.fixture
def evaluator(engine, settings):
    # Configuration of every machine belongs to no test: tests that set it restore it, and what an interrupted
    # run left behind (an override or a silence of a whole rule) is removed here.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alert_rule_overrides WHERE vm_name = ''"))
        conn.execute(
            text(
                "UPDATE alert_silences SET ended_at = UTC_TIMESTAMP(6), ended_by = 'test-setup' "
                "WHERE vm_name IS NULL AND ended_at IS NULL"
            )  # fmt: skip
        )
    alert_settings = dataclasses.replace(settings.alerts, hold_down=0.0, webhook_url="http://127.0.0.1:9/hook")
    return AlertEvaluator(AlertStore(engine), HeartbeatStore(engine), alert_settings, rpo_default=86_400)


def _alert(engine, key: str):
    with engine.connect() as conn:
        return conn.execute(select(alerts).where(alerts.c.alert_key == key)).first()


def _notifications(engine, key: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(alert_notifications.c.event, alert_notifications.c.channel)
            .join(alerts, alerts.c.id == alert_notifications.c.alert_id)
            .where(alerts.c.alert_key == key)
            .order_by(alert_notifications.c.id)
        ).all()
    return [tuple(r) for r in rows]


def _job(agent, vm: str, backup_type: str = "full") -> str:
    body = {"vm_name": vm, "backup_type": backup_type, "repository_id": "repo-alerts"}
    response = agent.post("/backups", json=body)
    assert response.status_code == 201, response.text
    return response.json()["backup_id"]


def _run(agent, job_id: str, start: datetime, seconds: int, status: str, **extra) -> None:
    for t in range(0, seconds, max(1, seconds // 5)):
        body = update_body(t + 1, total=seconds + 1, timestamp=(start + timedelta(seconds=t)).isoformat())
        assert agent.post(f"/telemetry/backup/{job_id}", json=body).status_code == 202
    end = (start + timedelta(seconds=seconds)).isoformat()
    final = update_body(seconds, total=seconds, status=status, timestamp=end, **extra)
    assert agent.post(f"/telemetry/backup/{job_id}", json=final).status_code == 200


def test_a_failed_job_fires_once_and_a_later_completed_one_resolves_it(agent, engine, evaluator, unique):
    vm = f"alert-failed-{unique}"
    key = f"job_failed:{vm}:backup"
    start = datetime.now(UTC) - HOUR
    _run(agent, _job(agent, vm), start, 60, "failed", error_message="snapshot could not be created")
    evaluator.run_once()
    alert = _alert(engine, key)
    assert alert.state == "firing" and alert.severity == "critical"
    assert alert.summary == f"Backup of {vm} failed: snapshot could not be created"
    _run(agent, _job(agent, vm), start + timedelta(minutes=5), 60, "failed", error_message="again")
    evaluator.run_once()
    assert "2 failures in a row" in _alert(engine, key).summary
    assert _notifications(engine, key) == [("firing", "webhook")], "one alert, notified once"

    _run(agent, _job(agent, vm), start + timedelta(minutes=10), 60, "completed")
    evaluator.run_once()
    alert = _alert(engine, key)
    assert alert.state == "resolved" and alert.resolved_at is not None
    assert _notifications(engine, key) == [("firing", "webhook"), ("resolved", "webhook")]
    with engine.connect() as conn:
        t = alert_transitions.c
        kinds = conn.execute(select(t.kind).where(t.alert_id == alert.id).order_by(t.id)).scalars().all()
    assert kinds == ["fired", "resolved"]


def test_a_cancelled_job_does_not_clear_a_failure(agent, engine, evaluator, unique):
    vm = f"alert-cancel-{unique}"
    start = datetime.now(UTC) - HOUR
    _run(agent, _job(agent, vm), start, 30, "failed")
    _run(agent, _job(agent, vm), start + timedelta(minutes=5), 30, "cancelled")
    evaluator.run_once()
    assert _alert(engine, f"job_failed:{vm}:backup").state == "firing"


def test_rpo_warns_above_one_objective_and_is_critical_above_two(agent, engine, evaluator, unique):
    vm = f"alert-rpo-{unique}"
    _run(agent, _job(agent, vm), datetime.now(UTC) - 30 * HOUR, 60, "completed")
    evaluator.run_once()
    alert = _alert(engine, f"rpo:{vm}")
    assert alert.state == "firing" and alert.severity == "warning" and "RPO" in alert.summary
    assert JobStore(engine).set_rpo(vm, 12 * 3600)
    evaluator.run_once()
    assert _alert(engine, f"rpo:{vm}").severity == "critical"
    assert [e for e, _ in _notifications(engine, f"rpo:{vm}")] == ["firing", "firing"], "escalation is notified"
    _run(agent, _job(agent, vm), datetime.now(UTC) - timedelta(minutes=5), 60, "completed")
    evaluator.run_once()
    assert _alert(engine, f"rpo:{vm}").state == "resolved"


def test_stalled_pending_and_never_backed_up(agent, engine, evaluator, unique):
    stalled_vm, pending_vm, never_vm = f"alert-stall-{unique}", f"alert-pend-{unique}", f"alert-never-{unique}"
    stalled = _job(agent, stalled_vm)
    for _ in range(3):
        assert agent.post(f"/telemetry/backup/{stalled}", json=update_body(5)).status_code == 202
    pending = _job(agent, pending_vm)
    never = _job(agent, never_vm)
    with engine.begin() as conn:  # time passes: by hand, as the server's clock would have it
        conn.execute(text("UPDATE backup_jobs SET progress_seen_at = UTC_TIMESTAMP(6) - INTERVAL 20 MINUTE "
                          "WHERE id = :id"), {"id": stalled})  # fmt: skip
        conn.execute(text("UPDATE backup_jobs SET created_at = UTC_TIMESTAMP(6) - INTERVAL 40 MINUTE "
                          "WHERE id = :id"), {"id": pending})  # fmt: skip
        conn.execute(text("UPDATE machines SET created_at = UTC_TIMESTAMP(6) - INTERVAL 2 DAY, "
                          "rpo_seconds = 86400 WHERE vm_name = :vm"), {"vm": never_vm})  # fmt: skip
    evaluator.run_once()
    assert _alert(engine, f"job_stalled:{stalled}").state == "firing"
    assert "transferred nothing for 20 min" in _alert(engine, f"job_stalled:{stalled}").summary
    assert _alert(engine, f"job_pending_too_long:{pending}").state == "firing"
    assert _alert(engine, f"never_backed_up:{never_vm}").state == "firing"
    assert _alert(engine, f"job_pending_too_long:{never}") is None, "created a moment ago"

    assert agent.post(f"/telemetry/backup/{stalled}", json=update_body(9)).status_code == 202  # bytes advance
    assert agent.post(f"/telemetry/backup/{pending}", json=update_body(1)).status_code == 202  # telemetry at last
    evaluator.run_once()
    assert _alert(engine, f"job_stalled:{stalled}").state == "resolved"
    assert _alert(engine, f"job_pending_too_long:{pending}").state == "resolved"


def test_a_job_running_past_twice_its_usual_duration_is_overrunning(agent, engine, evaluator, unique):
    vm = f"alert-over-{unique}"
    base = datetime.now(UTC) - 10 * HOUR
    for i in range(3):
        _run(agent, _job(agent, vm), base + i * HOUR, 100, "completed")
    running = _job(agent, vm)
    start = datetime.now(UTC) - timedelta(seconds=300)
    first = update_body(1, timestamp=start.isoformat())
    assert agent.post(f"/telemetry/backup/{running}", json=first).status_code == 202
    evaluator.run_once()
    assert _alert(engine, f"job_overrunning:{running}") is None, "its agent has reported no time passing yet"
    # 250 s on the agent's clock, 2.5 × the usual 100 s.
    late = update_body(2, timestamp=(start + timedelta(seconds=250)).isoformat())
    assert agent.post(f"/telemetry/backup/{running}", json=late).status_code == 202
    evaluator.run_once()
    alert = _alert(engine, f"job_overrunning:{running}")
    assert alert.state == "firing" and "its usual 2 min" in alert.summary
    assert agent.post(f"/telemetry/backup/{running}", json=update_body(3, status="completed")).status_code == 200
    evaluator.run_once()
    assert _alert(engine, f"job_overrunning:{running}").state == "resolved"


def test_pipeline_unhealthy_when_a_process_has_seen_influxdb_fail_for_minutes(engine, evaluator, unique):
    beats = HeartbeatStore(engine)
    process = f"api:test:{unique}"
    beats.beat(process, influx_failing_since=datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=2))
    evaluator.run_once()
    assert (
        _alert(engine, "pipeline_unhealthy:influxdb") is None
        or _alert(engine, "pipeline_unhealthy:influxdb").state != "firing"
    )
    beats.beat(
        process, influx_failing_since=datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=6), detail="503"
    )
    evaluator.run_once()
    alert = _alert(engine, "pipeline_unhealthy:influxdb")
    assert alert.state == "firing" and "InfluxDB has been unreachable for 6 min" in alert.summary
    beats.beat(process)
    evaluator.run_once()
    assert _alert(engine, "pipeline_unhealthy:influxdb").state == "resolved"


def test_two_evaluators_at_once_one_evaluates(engine, settings):
    store = AlertStore(engine)
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with store.claim_evaluation() as claim:
            assert claim is not None
            holding.set()
            release.wait(10)

    worker = threading.Thread(target=hold)
    worker.start()
    try:
        assert holding.wait(10)
        other = AlertEvaluator(store, HeartbeatStore(engine), settings.alerts, rpo_default=86_400)
        assert other.run_once().claimed is False
    finally:
        release.set()
        worker.join()
