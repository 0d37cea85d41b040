"""The pure parts of alert delivery: webhook body and signature, what a status means, back-off, the e-mails."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.alerts.delivery.channel import RetryPolicy
from pipeline.alerts.delivery.email import (
    digest_message,
    digest_ready,
    notification_message,
    subject,
)
from pipeline.alerts.delivery.webhook import classify_status, encode_body, sign, verify
from pipeline.alerts.store import DueNotification
from pipeline.mail import Attachment, InlineImage, SmtpConfig, compose

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def _payload(alert_id: int = 7, seq: int = 1, state: str = "firing", severity: str = "critical", **extra) -> dict:
    return {
        "idempotency_key": f"sendense-alert-{alert_id}-{seq}",
        "alert_id": alert_id,
        "rule": "job_failed",
        "state": state,
        "severity": severity,
        "vm_name": "db-01 (Zürich)",
        "job_id": "backup-db-01-1",
        "job_type": "backup",
        "summary": "Backup of db-01 (Zürich) failed: snapshot <could not> be created",
        "started_at": "2026-12-03T09:00:00+00:00",
        "resolved_at": None,
        "notified_at": (NOW - timedelta(seconds=extra.pop("age", 0))).isoformat(),
        "dashboard_url": "http://127.0.0.1:5006/?vm=db-01+%28Z%C3%BCrich%29",
        "api_path": f"/api/v1/alerts/{alert_id}",
        **extra,
    }


CONFIG = SmtpConfig("mail.example.test", sender="sendense@alerts.example.test")


def test_the_webhook_body_is_the_payload_as_compact_utf8_json_the_same_every_time():
    payload = _payload()
    body = encode_body(payload)
    assert json.loads(body) == payload
    assert body == encode_body(json.loads(body)), "a retry of the stored payload is the same bytes"
    assert "Zürich".encode() in body and b", " not in body


def test_the_signature_is_the_hex_hmac_sha256_of_the_exact_body():
    body = encode_body(_payload())
    expected = hmac.new(b"top-secret", body, hashlib.sha256).hexdigest()
    assert sign(body, "top-secret") == f"sha256={expected}"
    assert verify(body, sign(body, "top-secret"), "top-secret")
    assert not verify(body + b" ", sign(body, "top-secret"), "top-secret")
    assert not verify(body, sign(body, "other"), "top-secret")


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, "sent"), (202, "sent"), (204, "sent"), (301, "retry"), (400, "refused"), (401, "refused"),
     (403, "refused"), (404, "refused"), (408, "retry"), (410, "refused"), (422, "refused"), (429, "retry"),
     (500, "retry"), (502, "retry"), (503, "retry"), (504, "retry")],
)  # fmt: skip
def test_what_each_status_means(status, verdict):
    assert classify_status(status) == verdict


def test_back_off_doubles_from_the_base_up_to_the_maximum_and_honours_retry_after():
    policy = RetryPolicy(base=5, maximum=300)
    assert [policy.delay(n) for n in range(8)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert policy.delay(10_000) == 300, "no overflow after very many attempts"
    assert policy.delay(0, at_least=42) == 42
    assert policy.delay(0, at_least=9999) == 300


def test_a_notification_email_has_the_subject_parts_and_headers_a_receiver_needs():
    payload = _payload()
    msg = notification_message(payload, CONFIG, ["ops@example.test", "oncall@example.test"])
    assert subject(payload) == "[CRITICAL] firing: Backup of db-01 (Zürich) failed: snapshot <could not> be created"
    assert msg["Subject"] == subject(payload)
    assert msg["Message-ID"] == "<sendense-alert-7-1@alerts.example.test>"
    assert msg["X-Sendense-Idempotency-Key"] == "sendense-alert-7-1"
    assert msg["To"] == "ops@example.test, oncall@example.test"
    text, html = msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()
    assert "sendense-alert-7-1" in text and "2026-12-03 09:00:00 UTC" in text and "db-01 (Zürich)" in text
    assert "&lt;could not&gt;" in html and "<could not>" not in html, "the summary is escaped in HTML"
    assert 'href="http://127.0.0.1:5006/?vm=db-01+%28Z%C3%BCrich%29"' in html


def test_the_dashboard_link_of_a_notification_quotes_the_machine_name():
    from pipeline.alerts.lifecycle import Notice
    from pipeline.alerts.store import notification_payload

    alert = {
        "id": 3,
        "rule": "rpo",
        "vm_name": "mail & files (Zürich)",
        "summary": "s",
        "started_at": NOW.replace(tzinfo=None),
    }
    payload = notification_payload(alert, Notice("firing", "warning", 1), "https://ops.example.test/dash/", NOW)
    assert payload["dashboard_url"] == "https://ops.example.test/dash/?vm=mail+%26+files+%28Z%C3%BCrich%29"
    assert payload["idempotency_key"] == "sendense-alert-3-1" and payload["api_path"] == "/api/v1/alerts/3"


def test_a_resolved_notification_says_so_in_its_subject():
    payload = _payload(seq=2, state="resolved", resolved_at="2026-12-03T09:30:00+00:00")
    msg = notification_message(payload, CONFIG, ["ops@example.test"])
    assert msg["Subject"].startswith("[CRITICAL] resolved: Backup of db-01")
    assert "2026-12-03 09:30:00 UTC" in msg.get_body(("plain",)).get_content()


def test_a_digest_lists_every_notification_with_its_key_and_is_the_same_message_when_repeated():
    payloads = [_payload(1), _payload(2, severity="warning"), _payload(1, 2, state="resolved")]
    msg = digest_message(payloads, CONFIG, ["ops@example.test"])
    assert msg["Subject"] == "[CRITICAL] Sendense: 3 alert notifications (2 firing, 1 resolved)"
    keys = ["sendense-alert-1-1", "sendense-alert-2-1", "sendense-alert-1-2"]
    assert msg.get_all("X-Sendense-Idempotency-Key") == keys
    text = msg.get_body(("plain",)).get_content()
    assert all(k in text for k in keys)
    assert digest_message(payloads, CONFIG, ["ops@example.test"])["Message-ID"] == msg["Message-ID"]
    assert digest_message(payloads[:2], CONFIG, ["ops@example.test"])["Message-ID"] != msg["Message-ID"]


def _due(payload: dict) -> DueNotification:
    return DueNotification(1, payload["alert_id"], "email", payload["state"], payload["idempotency_key"], payload, 0)


def test_a_digest_waits_until_its_oldest_notification_has_waited_its_minutes():
    assert not digest_ready([], NOW, 5)
    young = [_due(_payload(age=60)), _due(_payload(2, age=10))]
    assert not digest_ready(young, NOW, 5)
    assert digest_ready([*young, _due(_payload(3, age=300))], NOW, 5), "exactly 5 minutes is due"
    assert digest_ready(young, NOW, 5, limit=2), "a full digest goes at once"


def test_compose_adds_attachments_after_the_text_and_html_alternatives():
    pdf = Attachment("estate.pdf", b"%PDF-1.7 ...", "application/pdf")
    msg = compose(subject="Daily report", text="see attached", html="<p>see attached</p>", sender="a@b.test",
                  to=["c@d.test"], attachments=[pdf])  # fmt: skip
    kinds = [p.get_content_type() for p in msg.walk()]
    assert kinds == ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "application/pdf"]
    (pdf,) = list(msg.iter_attachments())
    assert pdf.get_filename() == "estate.pdf" and pdf.get_content() == b"%PDF-1.7 ..."


def test_pictures_of_the_html_part_travel_with_it_by_content_id():
    png = InlineImage("chart-0.2026-12-02@b.test", b"\x89PNG...")
    pdf = Attachment("estate.pdf", b"%PDF", "application/pdf")
    msg = compose(subject="Daily report", text="see the charts", html='<img src="cid:chart-0.2026-12-02@b.test">',
                  sender="a@b.test", to=["c@d.test"], attachments=[pdf], inline=[png])  # fmt: skip
    kinds = [p.get_content_type() for p in msg.walk()]
    assert kinds == ["multipart/mixed", "multipart/alternative", "text/plain", "multipart/related", "text/html",
                     "image/png", "application/pdf"]  # fmt: skip
    (image,) = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<chart-0.2026-12-02@b.test>" and image.get_content() == b"\x89PNG..."
    assert [a.get_filename() for a in msg.iter_attachments()] == ["estate.pdf"]
