"""The e-mail channel: one message per notification, or one digest every N minutes, both plain text plus HTML."""

from __future__ import annotations

import hashlib
import html
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage

from pipeline.alerts.delivery.channel import DeliveryResult, NotificationChannel
from pipeline.alerts.store import DueNotification
from pipeline.alerts.vocabulary import severity_rank
from pipeline.clock import aware
from pipeline.mail import MailNotSent, SmtpConfig, SmtpSession, compose

__all__ = [
    "DIGEST_MAX",
    "IDEMPOTENCY_HEADER",
    "EmailChannel",
    "digest_message",
    "digest_ready",
    "notification_message",
    "subject",
]

IDEMPOTENCY_HEADER = "X-Sendense-Idempotency-Key"
DIGEST_MAX = 500
"""Notifications in one digest at most (a bigger backlog goes in several, one after the other)."""

_FIELDS = (
    ("Machine", "vm_name"),
    ("Job", "job_id"),
    ("Job type", "job_type"),
    ("Rule", "rule"),
    ("Started", "started_at"),
    ("Resolved", "resolved_at"),
    ("Dashboard", "dashboard_url"),
    ("API", "api_path"),
    ("Idempotency key", "idempotency_key"),
)


def subject(payload: dict) -> str:
    """`[CRITICAL] firing: Backup of db-01 failed`."""
    return f"[{payload['severity'].upper()}] {payload['state']}: {payload['summary']}"


def _shown(key: str, value) -> str:
    if value is None:
        return "-"
    if key.endswith("_at"):
        return aware(datetime.fromisoformat(value)).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def _text(payload: dict) -> str:
    lines = [subject(payload), ""]
    lines += [f"{label + ':':<17}{_shown(key, payload.get(key))}" for label, key in _FIELDS]
    return "\n".join(lines) + "\n"


def _html_rows(payload: dict) -> str:
    cells = []
    for label, key in _FIELDS:
        shown = html.escape(_shown(key, payload.get(key)))
        if key == "dashboard_url" and payload.get(key):
            shown = f'<a href="{html.escape(payload[key], quote=True)}">{shown}</a>'
        cells.append(f"<tr><th align='left'>{html.escape(label)}</th><td>{shown}</td></tr>")
    return "".join(cells)


_COLOURS = {"critical": "#b71c1c", "warning": "#e65100", "info": "#0d47a1"}


def _html_block(payload: dict) -> str:
    colour = "#2e7d32" if payload["state"] == "resolved" else _COLOURS.get(payload["severity"], "#333")
    return (
        f"<h3 style='color:{colour}'>{html.escape(subject(payload))}</h3>"
        f"<table cellpadding='3'>{_html_rows(payload)}</table>"
    )


def notification_message(payload: dict, config: SmtpConfig, to: Sequence[str]) -> EmailMessage:
    """One notification's e-mail. Its Message-ID is made from the idempotency key, so a repeat after a crash
    is the same message to every mail system that drops duplicates by Message-ID."""
    key = payload["idempotency_key"]
    return compose(
        subject=subject(payload),
        text=_text(payload),
        html=f"<html><body>{_html_block(payload)}</body></html>",
        sender=config.sender,
        to=to,
        message_id=f"<{key}@{config.domain}>",
        headers={IDEMPOTENCY_HEADER: key},
    )


def digest_message(payloads: Sequence[dict], config: SmtpConfig, to: Sequence[str]) -> EmailMessage:
    """Every notification due in one message, each with its key (also one X-Sendense-Idempotency-Key header
    per notification). The Message-ID is made from the keys: the same digest repeated is the same message."""
    keys = [p["idempotency_key"] for p in payloads]
    worst = max((p["severity"] for p in payloads), key=severity_rank)
    firing = sum(p["state"] == "firing" for p in payloads)
    title = (
        f"[{worst.upper()}] Sendense: {len(payloads)} alert notification{'s' if len(payloads) != 1 else ''} "
        f"({firing} firing, {len(payloads) - firing} resolved)"
    )
    text = "\n".join([title, "", *(_text(p) for p in payloads)])
    blocks = "<hr>".join(_html_block(p) for p in payloads)
    digest_id = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]
    return compose(
        subject=title,
        text=text,
        html=f"<html><body><h2>{html.escape(title)}</h2>{blocks}</body></html>",
        sender=config.sender,
        to=to,
        message_id=f"<sendense-digest-{digest_id}@{config.domain}>",
        headers={IDEMPOTENCY_HEADER: keys},
    )


def digest_ready(rows: Sequence[DueNotification], now: datetime, minutes: float, limit: int = DIGEST_MAX) -> bool:
    """A digest goes once its oldest notification has waited `minutes` (so a burst shares one message and
    none waits longer), or at once when a full digest is waiting."""
    if not rows:
        return False
    if len(rows) >= limit:
        return True
    oldest = min(aware(datetime.fromisoformat(r.payload["notified_at"])) for r in rows)
    return aware(now) - oldest >= timedelta(minutes=minutes)


class EmailChannel(NotificationChannel):
    """Sends through one SMTP connection per run: a message per notification, or a digest of every one due."""

    name = "email"

    def __init__(self, config: SmtpConfig, to: Sequence[str], digest_minutes: float = 0.0) -> None:
        self.config = config
        self.to = tuple(to)
        self.digest_minutes = digest_minutes
        self.claim_size = DIGEST_MAX if digest_minutes > 0 else 1
        self.session = SmtpSession(config)

    @classmethod
    def from_settings(cls, settings) -> EmailChannel:
        return cls(SmtpConfig.from_settings(settings), settings.email_to, settings.email_digest_minutes)

    def ready(self, rows: Sequence[DueNotification], now: datetime) -> bool:
        return self.digest_minutes <= 0 or digest_ready(rows, now, self.digest_minutes, self.claim_size)

    def _send(self, message: EmailMessage) -> DeliveryResult:
        try:
            self.session.send(message)
        except MailNotSent as exc:
            return DeliveryResult.refused(str(exc)) if exc.permanent else DeliveryResult.retry(str(exc))
        return DeliveryResult.sent()

    def deliver(self, rows: Sequence[DueNotification]) -> list[DeliveryResult]:
        if self.digest_minutes <= 0:
            return super().deliver(rows)
        # All or nothing: the digest's rows are marked together, in the one transaction that claimed them.
        return [self._send(digest_message([r.payload for r in rows], self.config, self.to))] * len(rows)

    def deliver_one(self, row: DueNotification) -> DeliveryResult:
        return self._send(notification_message(row.payload, self.config, self.to))

    def end_run(self) -> None:
        self.session.close()

    def close(self) -> None:
        self.session.close()
