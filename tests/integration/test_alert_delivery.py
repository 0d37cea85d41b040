"""Alert notifications delivered to real receivers: a webhook receiver process and an SMTP server process
(aiosmtpd, STARTTLS, AUTH), from jobs failed through the API, the evaluator and the scheduler's notify job."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from pipeline.alerts.delivery.webhook import verify
from pipeline.alerts.evaluator import AlertEvaluator
from pipeline.alerts.heartbeats import HeartbeatStore
from pipeline.alerts.store import AlertStore
from pipeline.db.tables import alert_notifications, alerts
from pipeline.mail import SmtpConfig, compose, send_mail
from pipeline.scheduler import SchedulerJobs, build_scheduler
from tests.conftest import OUTPUT_DIR
from tests.support.probes import update_body
from tests.support.smtp_receiver import SmtpReceiver
from tests.support.webhook_receiver import WebhookReceiver

WEBHOOK_PORT = int(os.environ.get("SENDENSE_TEST_WEBHOOK_PORT", "18095"))
SMTP_PORT = int(os.environ.get("SENDENSE_TEST_SMTP_PORT", "18025"))
SECRET = "webhook-test-secret"


@pytest.fixture(scope="module")
def webhook(stack) -> Iterator[WebhookReceiver]:
    record = OUTPUT_DIR / f"webhook-{int(time.time())}.jsonl"
    with WebhookReceiver(WEBHOOK_PORT, record).start() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def smtp(stack) -> Iterator[SmtpReceiver]:
    with SmtpReceiver(SMTP_PORT, OUTPUT_DIR / f"smtp-{int(time.time())}").start() as receiver:
        yield receiver


@pytest.fixture
def alert_settings(settings, webhook, smtp):
    """Both channels at the test receivers; no hold-down, quick retries."""
    env = smtp.settings_env()
    return dataclasses.replace(
        settings.alerts,
        hold_down=0.0,
        retry_base=0.1,
        retry_max=0.5,
        webhook_url=webhook.url,
        webhook_secret=SECRET,
        webhook_timeout=2.0,
        smtp_host=env["SENDENSE_SMTP_HOST"],
        smtp_port=smtp.port,
        smtp_user=smtp.user,
        smtp_password=smtp.password,
        smtp_from=env["SENDENSE_SMTP_FROM"],
        smtp_ca_file=env["SENDENSE_SMTP_CA_FILE"],
        smtp_timeout=5.0,
        email_to=("ops@example.test",),
        email_min_severity="info",
    )


def _jobs(settings, alert_settings) -> SchedulerJobs:
    return SchedulerJobs(dataclasses.replace(settings, alerts=alert_settings))


@pytest.fixture
def jobs(settings, alert_settings) -> Iterator[SchedulerJobs]:
    scheduler_jobs = _jobs(settings, alert_settings)
    yield scheduler_jobs
    scheduler_jobs.close()


def _evaluate(engine, alert_settings) -> None:
    AlertEvaluator(AlertStore(engine), HeartbeatStore(engine), alert_settings, rpo_default=86_400).run_once()


def _finish_job(agent, vm: str, status: str, job_type: str = "backup") -> None:
    body = {"vm_name": vm, "backup_type": "full", "repository_id": "repo-notify", "job_type": job_type}
    response = agent.post("/backups", json=body)
    assert response.status_code == 201, response.text
    job_id = response.json()["backup_id"]
    start = datetime.now(UTC) - timedelta(minutes=5)
    first = update_body(1, total=10, timestamp=start.isoformat())
    assert agent.post(f"/telemetry/{job_type}/{job_id}", json=first).status_code == 202
    reason = {"error_message": "snapshot could not be created"} if status == "failed" else {}
    final = update_body(10, total=10, status=status, timestamp=(start + timedelta(seconds=30)).isoformat(), **reason)
    assert agent.post(f"/telemetry/{job_type}/{job_id}", json=final).status_code == 200


def _outbox(engine, vm: str, channel: str) -> list:
    """The outbox rows of `vm`'s job_failed alert on `channel`, oldest first."""
    n = alert_notifications.c
    with engine.connect() as conn:
        return conn.execute(
            select(alert_notifications)
            .join(alerts, alerts.c.id == n.alert_id)
            .where(alerts.c.alert_key == f"job_failed:{vm}:backup", n.channel == channel)
            .order_by(n.id)
        ).all()


def _deliver_until_sent(jobs: SchedulerJobs, engine, channel: str, vms: list[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        jobs.notify(channel)
        rows = [r for vm in vms for r in _outbox(engine, vm, channel)]
        if rows and all(r.state == "sent" for r in rows):
            return
        assert time.monotonic() < deadline, f"not all sent: {[(r.idempotency_key, r.state) for r in rows]}"
        time.sleep(0.1)


def _metric(jobs: SchedulerJobs, name: str, **labels) -> float:
    return jobs.metrics.registry.get_sample_value(name, labels) or 0.0


# --- webhook --------------------------------------------------------------------------------------------


def test_the_webhook_gets_the_stored_payload_signed_with_its_key_once(agent, engine, alert_settings, jobs, webhook,
                                                                      unique):  # fmt: skip
    vm = f"notify-hook-{unique}"
    _finish_job(agent, vm, "failed")
    _evaluate(engine, alert_settings)
    (row,) = _outbox(engine, vm, "webhook")
    assert row.state == "pending" and row.idempotency_key == row.payload["idempotency_key"]

    run = jobs.notify("webhook")
    assert run.sent >= 1 and run.stopped_by is None
    (got,) = [r for r in webhook.requests() if r.key == row.idempotency_key]
    assert got.answered == 200 and got.path == "/hook"
    assert got.json() == row.payload, "the body is the payload as stored"
    assert got.headers["content-type"] == "application/json"
    assert verify(got.body, got.headers["x-sendense-signature"], SECRET)
    assert got.headers["x-sendense-signature"].startswith("sha256=")
    assert got.headers["x-sendense-attempt"] == "1"
    (row,) = _outbox(engine, vm, "webhook")
    assert row.state == "sent" and row.attempts == 1 and row.sent_at is not None and row.last_error is None
    assert _metric(jobs, "sendense_alert_deliveries_total", channel="webhook", result="sent") == run.sent

    jobs.notify("webhook")
    assert webhook.accepted_keys()[row.idempotency_key] == 1, "a sent notification is not sent again"


def test_a_4xx_other_than_408_and_429_is_recorded_refused_and_not_retried(agent, engine, alert_settings, jobs,
                                                                         webhook, unique):  # fmt: skip
    vm = f"notify-gone-{unique}"
    _finish_job(agent, vm, "failed")
    _evaluate(engine, alert_settings)
    (row,) = _outbox(engine, vm, "webhook")
    webhook.answer(410)
    try:
        run = jobs.notify("webhook")
        time.sleep(0.6)  # longer than any back-off: a retry would be due by now
        jobs.notify("webhook")
    finally:
        webhook.answer(200)
    assert run.refused >= 1 and run.stopped_by is None, "a refusal does not stop the run"
    (row,) = _outbox(engine, vm, "webhook")
    assert row.state == "refused" and row.attempts == 1 and "410" in row.last_error
    assert sum(r.key == row.idempotency_key for r in webhook.requests()) == 1
    assert _metric(jobs, "sendense_alert_deliveries_total", channel="webhook", result="refused") >= 1


@pytest.mark.parametrize("status", [500, 429, 408])
def test_a_receiver_failing_for_a_while_gets_each_notification_exactly_once_after_it_recovers(
    agent, engine, alert_settings, jobs, webhook, unique, status
):
    vms = [f"notify-down{status}-{unique}-{n}" for n in range(3)]
    for vm in vms:
        _finish_job(agent, vm, "failed")
    _evaluate(engine, alert_settings)
    keys = [_outbox(engine, vm, "webhook")[0].idempotency_key for vm in vms]
    webhook.answer(status, seconds=1.5)
    failing_until = time.monotonic() + 1.5
    first = jobs.notify("webhook")
    assert first.sent == 0 and first.retried == 1, "the run stops at the first failure: the receiver is down"
    _deliver_until_sent(jobs, engine, "webhook", vms)
    assert time.monotonic() >= failing_until - 0.2, "delivered while the receiver was still failing?"
    accepted = webhook.accepted_keys()
    assert [accepted[k] for k in keys] == [1, 1, 1]
    refused_answers = [r for r in webhook.requests() if r.key in keys and r.answered == status]
    assert refused_answers, "the receiver's failures were seen"
    rows = [_outbox(engine, vm, "webhook")[0] for vm in vms]
    assert any(r.attempts > 1 for r in rows) and all(r.last_error is None for r in rows)


def test_an_alerts_transitions_reach_the_receiver_in_order_even_when_the_first_was_retried(
    agent, engine, alert_settings, jobs, webhook, unique
):
    vm = f"notify-order-{unique}"
    _finish_job(agent, vm, "failed")
    _evaluate(engine, alert_settings)
    webhook.answer(503, seconds=1.0)
    jobs.notify("webhook")  # the firing notification fails and backs off
    _finish_job(agent, vm, "completed")
    _evaluate(engine, alert_settings)
    firing, resolved = _outbox(engine, vm, "webhook")
    assert (firing.event, firing.state, resolved.event) == ("firing", "pending", "resolved")
    _deliver_until_sent(jobs, engine, "webhook", [vm])
    arrived = [r.key for r in webhook.accepted() if r.key in (firing.idempotency_key, resolved.idempotency_key)]
    assert arrived == [firing.idempotency_key, resolved.idempotency_key]


# --- e-mail ---------------------------------------------------------------------------------------------


def _mails(smtp: SmtpReceiver, keys: list[str]) -> list:
    return [m for m in smtp.messages() if set(m.get_all("X-Sendense-Idempotency-Key") or []) & set(keys)]


def test_each_notification_is_one_email_with_text_and_html_over_starttls_with_a_login(
    agent, engine, alert_settings, jobs, smtp, unique
):
    vm = f"notify-mail-{unique}"
    _finish_job(agent, vm, "failed")
    _evaluate(engine, alert_settings)
    _finish_job(agent, vm, "completed")
    _evaluate(engine, alert_settings)
    firing, resolved = _outbox(engine, vm, "email")
    _deliver_until_sent(jobs, engine, "email", [vm])

    mails = _mails(smtp, [firing.idempotency_key, resolved.idempotency_key])
    assert [m["X-Sendense-Idempotency-Key"] for m in mails] == [firing.idempotency_key, resolved.idempotency_key]
    first, second = mails
    assert first["Subject"] == f"[CRITICAL] firing: Backup of {vm} failed: snapshot could not be created"
    assert second["Subject"].startswith(f"[CRITICAL] resolved: Backup of {vm} failed")
    assert first["Message-ID"] == f"<{firing.idempotency_key}@alerts.example.test>"
    assert first["From"] == "sendense@alerts.example.test" and first["To"] == "ops@example.test"
    assert first["X-Test-Envelope-To"] == "ops@example.test"
    assert first["X-Test-TLS"] == "yes" and first["X-Test-Login"] == smtp.user, "STARTTLS, then the login"
    assert [p.get_content_type() for p in first.walk()] == ["multipart/alternative", "text/plain", "text/html"]
    text = first.get_body(("plain",)).get_content()
    assert firing.idempotency_key in text and vm in text
    assert f"/api/v1/alerts/{firing.alert_id}" in first.get_body(("html",)).get_content()
    assert _metric(jobs, "sendense_alert_deliveries_total", channel="email", result="sent") >= 2


def test_a_digest_waits_its_minutes_then_carries_every_notification_due_marked_sent_together(
    agent, engine, settings, alert_settings, smtp, unique
):
    digest = dataclasses.replace(alert_settings, email_digest_minutes=0.03)  # 1.8 s
    jobs = _jobs(settings, digest)
    try:
        vms = [f"notify-digest-{unique}-{n}" for n in range(3)]
        for vm in vms:
            _finish_job(agent, vm, "failed")
        _evaluate(engine, digest)
        keys = [_outbox(engine, vm, "email")[0].idempotency_key for vm in vms]
        assert jobs.notify("email").sent == 0, "too young for a digest"
        assert not _mails(smtp, keys)
        time.sleep(1.9)
        run = jobs.notify("email")
        assert run.sent >= 3
    finally:
        jobs.close()
    (mail,) = _mails(smtp, keys)
    assert set(keys) <= set(mail.get_all("X-Sendense-Idempotency-Key"))
    assert mail["Subject"].startswith("[CRITICAL] Sendense: ") and "alert notifications" in mail["Subject"]
    assert mail["Message-ID"].strip().startswith("<sendense-digest-")
    text = mail.get_body(("plain",)).get_content()
    assert all(k in text for k in keys) and all(vm in text for vm in vms)
    rows = [_outbox(engine, vm, "email")[0] for vm in vms]
    assert {r.state for r in rows} == {"sent"} and len({r.sent_at for r in rows}) == 1, "one transaction"


def test_an_smtp_server_stopped_then_started_gets_everything_once(agent, engine, alert_settings, jobs, smtp, unique):
    vms = [f"notify-smtpdown-{unique}-{n}" for n in range(3)]
    smtp.stop()
    try:
        for vm in vms:
            _finish_job(agent, vm, "failed")
        _evaluate(engine, alert_settings)
        run = jobs.notify("email")
        assert run.sent == 0 and run.retried == 1 and "cannot be reached" in run.stopped_by
    finally:
        smtp.start()
    _deliver_until_sent(jobs, engine, "email", vms)
    keys = [_outbox(engine, vm, "email")[0].idempotency_key for vm in vms]
    received = smtp.keys()
    assert [received[k] for k in keys] == [1, 1, 1]


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_the_smtp_login_works_with_auth_login_and_plain(stack, mechanism, unique):
    receiver = SmtpReceiver(SMTP_PORT + 1, OUTPUT_DIR / f"smtp-{mechanism}-{unique}", mechanisms=mechanism)
    with receiver.start():
        config = SmtpConfig("127.0.0.1", receiver.port, True, receiver.user, receiver.password,
                            "sendense@alerts.example.test", 5.0, str(receiver.cert))  # fmt: skip
        send_mail(config, compose(subject="hello", text="x", sender=config.sender, to=["ops@example.test"]))
        assert receiver.auth_attempts() == [f"{mechanism} {receiver.user} tls=yes ok=True"]
        assert [m["Subject"] for m in receiver.messages()] == ["hello"]


def test_no_login_over_a_plain_connection_when_the_server_offers_no_starttls(
    agent, engine, settings, alert_settings, unique
):
    plain = SmtpReceiver(SMTP_PORT + 2, OUTPUT_DIR / f"smtp-plain-{unique}", tls=False)
    with plain.start():
        no_tls = dataclasses.replace(alert_settings, smtp_port=plain.port, smtp_ca_file="")
        jobs = _jobs(settings, no_tls)
        try:
            vm = f"notify-plain-{unique}"
            _finish_job(agent, vm, "failed")
            _evaluate(engine, no_tls)
            run = jobs.notify("email")
        finally:
            jobs.close()
        assert run.sent == 0 and "does not offer STARTTLS" in run.stopped_by
        assert plain.auth_attempts() == [] and plain.messages() == [], "the password never went out"
    (row,) = _outbox(engine, vm, "email")
    assert row.state == "pending" and row.attempts == 1 and "STARTTLS" in row.last_error


def test_the_scheduler_runs_a_notify_job_per_channel_woken_when_an_evaluation_enqueues(settings, alert_settings):
    scheduler, jobs = build_scheduler(dataclasses.replace(settings, alerts=alert_settings))
    try:
        ids = {job.id for job in scheduler.get_jobs()}
        assert {"notify-webhook", "notify-email"} <= ids
        assert scheduler.get_job("notify-webhook").trigger.interval.total_seconds() == alert_settings.deliver_interval
        later = datetime.now(UTC) + timedelta(hours=1)
        for name in ("notify-webhook", "notify-email"):
            scheduler.modify_job(name, next_run_time=later)
        jobs.delivering.add("email")  # a sender still running is left to pick up the new rows itself
        jobs.wake_senders()  # what an evaluation that enqueued notifications calls
        assert scheduler.get_job("notify-webhook").next_run_time <= datetime.now(UTC)
        assert scheduler.get_job("notify-email").next_run_time == later
    finally:
        jobs.close()
    _, without = build_scheduler(dataclasses.replace(settings, alerts=dataclasses.replace(settings.alerts,
                                                                                          webhook_url="")))  # fmt: skip
    try:
        assert "webhook" not in without.sender.channels
    finally:
        without.close()


def test_the_alertmanager_channel_is_delivered_by_the_same_sender_with_the_re_post_jobs_instance(
    settings, alert_settings
):
    with_am = dataclasses.replace(alert_settings, alertmanager_url="http://127.0.0.1:9")  # nothing is posted here
    scheduler, jobs = build_scheduler(dataclasses.replace(settings, alerts=with_am))
    try:
        assert {"notify-alertmanager", "alertmanager-resend"} <= {job.id for job in scheduler.get_jobs()}
        assert jobs.sender.channels["alertmanager"].inner is jobs.alertmanager
    finally:
        jobs.close()
