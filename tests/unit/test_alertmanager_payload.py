"""The Alertmanager channel's pure parts: the posted alerts' labels and times, and what a re-post sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.alerts.delivery.alertmanager import Posted, delivery_alerts, postable_alert, resend_selection

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
STARTED = NOW - timedelta(minutes=20)
KEY = "job_failed:db 01:backup"


def payload(state: str = "firing", severity: str = "critical", seq: int = 1, **extra) -> dict:
    return {
        "idempotency_key": f"sendense-alert-7-{seq}",
        "alert_id": 7,
        "rule": "job_failed",
        "state": state,
        "severity": severity,
        "vm_name": "db 01",
        "job_id": "backup-db01-1",
        "job_type": "backup",
        "summary": "Backup of db 01 failed: snapshot could not be created",
        "started_at": STARTED.isoformat(),
        "resolved_at": None,
        "notified_at": NOW.isoformat(),
        "dashboard_url": "http://127.0.0.1:5006/?vm=db 01",
        "api_path": "/api/v1/alerts/7",
        **extra,
    }


def sent(id_: int, event: str = "firing", severity: str = "critical", state: str = "sent", alert_id: int = 7):
    return Posted(id_, alert_id, event, state, payload(event, severity, seq=id_))


def test_a_firing_alert_is_labelled_by_rule_severity_machine_job_type_and_key():
    [alert] = delivery_alerts(10, payload(), KEY, [], NOW, resend_seconds=60)
    assert alert["labels"] == {
        "alertname": "job_failed",
        "severity": "critical",
        "vm_name": "db 01",
        "job_type": "backup",
        "alert_key": KEY,
    }
    assert alert["annotations"] == {
        "summary": "Backup of db 01 failed: snapshot could not be created",
        "dashboard_url": "http://127.0.0.1:5006/?vm=db%2001",
        "idempotency_key": "sendense-alert-7-1",
        "job_id": "backup-db01-1",
    }
    assert alert["generatorURL"] == "http://127.0.0.1:5006/?vm=db%2001", "a URI, as Alertmanager requires"


def test_a_firing_alert_starts_when_the_alert_started_and_lasts_four_resend_intervals():
    [alert] = delivery_alerts(10, payload(), KEY, [], NOW, resend_seconds=60)
    assert alert["startsAt"] == "2026-12-03T08:40:00.000Z"
    assert alert["endsAt"] == "2026-12-03T09:04:00.000Z"


def test_labels_left_out_when_the_alert_has_no_machine_or_job_type():
    body = payload(rule="pipeline_unhealthy", vm_name=None, job_id=None, job_type=None)
    alert = postable_alert(body, "pipeline_unhealthy", NOW)
    assert alert["labels"] == {
        "alertname": "pipeline_unhealthy",
        "severity": "critical",
        "alert_key": "pipeline_unhealthy",
    }
    assert "job_id" not in alert["annotations"]


def test_a_resolve_ends_at_the_resolve_time():
    resolved_at = NOW - timedelta(minutes=5)
    body = payload("resolved", resolved_at=resolved_at.isoformat(), seq=2)
    [alert] = delivery_alerts(11, body, KEY, [sent(10)], NOW, resend_seconds=60)
    assert alert["endsAt"] == "2026-12-03T08:55:00.000Z" and alert["startsAt"] == "2026-12-03T08:40:00.000Z"
    assert alert["labels"]["severity"] == "critical"


def test_an_escalation_fires_the_new_severity_and_resolves_the_one_alertmanager_had():
    warning_first = sent(10, severity="warning")
    fired, resolved = delivery_alerts(11, payload(severity="critical", seq=2), KEY, [warning_first], NOW, 60)
    assert fired["labels"]["severity"] == "critical" and fired["endsAt"] == "2026-12-03T09:04:00.000Z"
    assert resolved["labels"]["severity"] == "warning" and resolved["endsAt"] == "2026-12-03T09:00:00.000Z"
    assert {k: v for k, v in resolved["labels"].items() if k != "severity"} == {
        k: v for k, v in fired["labels"].items() if k != "severity"
    }


def test_a_resolve_after_a_quiet_deescalation_resolves_the_severity_alertmanager_has():
    # Notified critical, then lowered to warning without a notification, then resolved at warning.
    body = payload("resolved", severity="warning", resolved_at=NOW.isoformat(), seq=2)
    [alert] = delivery_alerts(11, body, KEY, [sent(10, severity="critical")], NOW, 60)
    assert alert["labels"]["severity"] == "critical"


def test_a_notification_older_than_one_delivered_posts_nothing():
    assert delivery_alerts(10, payload(), KEY, [sent(11, "resolved")], NOW, 60) is None


def test_the_same_notification_delivered_again_is_posted_again():
    [alert] = delivery_alerts(10, payload(), KEY, [sent(10)], NOW, 60)
    assert alert["labels"]["severity"] == "critical"


def test_a_resolve_is_never_dated_in_the_future():
    body = payload("resolved", resolved_at=(NOW + timedelta(hours=1)).isoformat(), seq=2)
    [alert] = delivery_alerts(11, body, KEY, [sent(10)], NOW, 60)
    assert alert["endsAt"] == "2026-12-03T09:00:00.000Z"


def test_resend_takes_each_alert_whose_last_sent_notification_fired():
    rows = [
        sent(1, alert_id=1),  # fired: re-posted
        sent(2, alert_id=2),
        sent(3, "resolved", alert_id=2),  # resolved since: not
        sent(4, "resolved", alert_id=3),
        sent(5, alert_id=3),  # fired again after a resolve: re-posted
        sent(6, severity="warning", alert_id=4),
        sent(7, severity="critical", alert_id=4),  # escalated: the critical one
    ]
    picked = resend_selection(rows)
    assert [(p.alert_id, p.id) for p in picked] == [(1, 1), (3, 5), (4, 7)]


def test_resend_leaves_alerts_with_a_notification_pending_to_the_sender():
    rows = [sent(1, alert_id=1), sent(2, "resolved", state="pending", alert_id=1), sent(3, state="pending", alert_id=2)]
    assert resend_selection(rows) == []


def test_resend_ignores_refused_and_never_sent_alerts():
    assert resend_selection([]) == []
    assert resend_selection([sent(1, state="refused", alert_id=1)]) == []
