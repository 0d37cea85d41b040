"""The webhook channel: the stored payload POSTed as JSON, signed with HMAC-SHA256, one notification per request."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import httpx

from pipeline.alerts.delivery.channel import DeliveryResult, NotificationChannel
from pipeline.alerts.store import DueNotification

__all__ = [
    "ATTEMPT_HEADER",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "WebhookChannel",
    "classify_status",
    "encode_body",
    "sign",
    "verify",
]

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "X-Sendense-Idempotency-Key"
SIGNATURE_HEADER = "X-Sendense-Signature"
ATTEMPT_HEADER = "X-Sendense-Attempt"


def encode_body(payload: dict) -> bytes:
    """The payload as the request's body: compact UTF-8 JSON, keys in the stored order. The same
    notification always gives the same bytes, so every retry carries the same signature."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str, secret: str) -> bool:
    """What a receiver does (docs/alerts.md): recompute over the raw body, compare in constant time."""
    return hmac.compare_digest(sign(body, secret), header)


def classify_status(status: int) -> str:
    """2xx sent; 408 and 429 (the receiver asks us to come back) and every other non-2xx retried; any other
    4xx refused: the receiver will not take this request however often it comes."""
    if 200 <= status < 300:
        return "sent"
    if 400 <= status < 500 and status not in (408, 429):
        return "refused"
    return "retry"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date: the back-off alone decides
        return None


class WebhookChannel(NotificationChannel):
    """POSTs each notification to `url`, with the idempotency key and the signature as headers."""

    name = "webhook"

    def __init__(self, url: str, secret: str, timeout: float) -> None:
        self.url = url
        self.secret = secret
        self.client = httpx.Client(timeout=timeout, follow_redirects=False, headers={"User-Agent": "sendense-alerts"})
        if not secret:
            log.warning("webhook %s: SENDENSE_ALERT_WEBHOOK_SECRET is empty, notifications go unsigned", url)

    @classmethod
    def from_settings(cls, settings) -> WebhookChannel:
        return cls(settings.webhook_url, settings.webhook_secret, settings.webhook_timeout)

    def headers(self, row: DueNotification, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: row.idempotency_key,
            ATTEMPT_HEADER: str(row.attempts + 1),
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(body, self.secret)
        return headers

    def deliver_one(self, row: DueNotification) -> DeliveryResult:
        body = encode_body(row.payload)
        try:
            response = self.client.post(self.url, content=body, headers=self.headers(row, body))
        except httpx.TimeoutException as exc:
            # It may have arrived: a retry carries the same key, which the receiver uses to drop the repeat.
            return DeliveryResult.retry(f"webhook {self.url} timed out ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return DeliveryResult.retry(f"webhook {self.url} unreachable: {type(exc).__name__}: {exc}")
        verdict = classify_status(response.status_code)
        if verdict == "sent":
            return DeliveryResult.sent()
        detail = f"webhook {self.url} answered {response.status_code}: {response.text[:200]!r}"
        if verdict == "refused":
            return DeliveryResult.refused(detail)
        return DeliveryResult.retry(detail, _retry_after(response))

    def close(self) -> None:
        self.client.close()
