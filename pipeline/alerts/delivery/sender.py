"""OutboxSender: claims due notifications of a channel, delivers them, records sent / retry / refused.

Exactly once per transition, as far as a sender can make it: a notification is marked sent only after its
receiver accepted it, in the transaction that claimed (locked) it, so no two senders deliver it at once
and a sender killed at any moment leaves it pending for the next one. What is left is the moment between
the receiver's acceptance and that commit: a crash there delivers it again, with the same idempotency key
(receivers drop the repeat by key; docs/alerts.md). Per-notification channels claim one row per
transaction to keep that moment to one notification.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from pipeline.alerts.delivery.channel import Channel, DeliveryResult, RetryPolicy
from pipeline.alerts.store import AlertStore, DueNotification
from pipeline.clock import aware

__all__ = ["OutboxSender", "SendRun"]

log = logging.getLogger(__name__)

Observer = Callable[[str, str, float | None], None]
"""Called per notification with (channel, sent|retried|refused, seconds it waited in the outbox when sent)."""


@dataclass
class SendRun:
    """What one run of one channel did; `stopped_by` is the error that ended it early (a receiver failing)."""

    channel: str = ""
    sent: int = 0
    retried: int = 0
    refused: int = 0
    stopped_by: str | None = None


def _waited(row: DueNotification, now: datetime) -> float | None:
    try:
        return (aware(now) - aware(datetime.fromisoformat(row.payload["notified_at"]))).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


class OutboxSender:
    """Runs the channels over the outbox. `budget`: seconds a run keeps claiming (the rest waits for the next
    run, which comes one delivery interval later)."""

    def __init__(
        self,
        store: AlertStore,
        channels: Mapping[str, Channel],
        retry: RetryPolicy,
        *,
        budget: float = 5.0,
        observe: Observer | None = None,
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.retry = retry
        self.budget = budget
        self.observe = observe or (lambda *_: None)

    def run_once(self, name: str) -> SendRun:
        """Deliver what is due on channel `name` until nothing is, the budget is spent, or a delivery must be
        retried: a receiver that failed one notification is left alone until the next run (it is most
        likely down, and every other notification would wait for its timeout too)."""
        channel = self.channels[name]
        run = SendRun(name)
        deadline = time.monotonic() + self.budget
        try:
            while time.monotonic() < deadline and run.stopped_by is None:
                with self.store.claim_due(name, limit=channel.claim_size) as claim:
                    if not claim.rows or not channel.ready(claim.rows, claim.now):
                        break
                    results = channel.deliver(claim.rows)
                    for row, result in zip(claim.rows, results, strict=True):
                        self._record(claim, row, result, run)
        finally:
            channel.end_run()
        if run.sent or run.refused or run.stopped_by:
            log.info("notify %s: %d sent, %d retried, %d refused%s", name, run.sent, run.retried, run.refused,
                     f" (stopped: {run.stopped_by})" if run.stopped_by else "")  # fmt: skip
        return run

    def _record(self, claim, row: DueNotification, result: DeliveryResult, run: SendRun) -> None:
        if result.state == "sent":
            claim.sent(row.id)
            run.sent += 1
            self.observe(run.channel, "sent", _waited(row, claim.now))
        elif result.state == "refused":
            claim.refused(row.id, result.error or "refused")
            run.refused += 1
            log.error("notification %s refused by %s: %s", row.idempotency_key, run.channel, result.error)
            self.observe(run.channel, "refused", None)
        else:
            delay = self.retry.delay(row.attempts, result.retry_after)
            claim.retry(row.id, result.error or "failed", delay)
            run.retried += 1
            if run.stopped_by is None:  # once per run: a failed digest would say it for each of its rows
                log.warning("notification %s not delivered by %s (attempt %d), again in %.0f s: %s",
                            row.idempotency_key, run.channel, row.attempts + 1, delay, result.error)  # fmt: skip
            run.stopped_by = result.error or "failed"
            self.observe(run.channel, "retried", None)

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
