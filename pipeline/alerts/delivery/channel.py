"""What a channel is: it delivers claimed notifications and says what became of each (sent, retry, refused)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from pipeline.alerts.store import DueNotification

__all__ = ["Channel", "DeliveryResult", "NotificationChannel", "OneAtATime", "RetryPolicy"]

DeliveryState = Literal["sent", "retry", "refused"]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What became of one notification: `sent` (the receiver accepted it), `retry` (not now: back off and try
    again, never given up) or `refused` (the receiver said no for good: recorded, not retried)."""

    state: DeliveryState
    error: str | None = None
    retry_after: float | None = None
    """Seconds the receiver asked us to wait (Retry-After), at least honoured by the back-off."""

    @classmethod
    def sent(cls) -> DeliveryResult:
        return cls("sent")

    @classmethod
    def retry(cls, error: str, retry_after: float | None = None) -> DeliveryResult:
        return cls("retry", error, retry_after)

    @classmethod
    def refused(cls, error: str) -> DeliveryResult:
        return cls("refused", error)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Back-off of failed deliveries: `base` seconds after the first failure, doubled each time, at most `maximum`."""

    base: float = 5.0
    maximum: float = 300.0

    def delay(self, attempts: int, at_least: float | None = None) -> float:
        """Seconds until the next try of a notification that has now failed `attempts + 1` times."""
        wait = min(self.maximum, self.base * 2 ** min(attempts, 30))
        return min(self.maximum, max(wait, at_least or 0.0))


class Channel(Protocol):
    """One way out. The sender claims up to `claim_size` due notifications of `name` (locked for it alone),
    asks `ready` whether to deliver them now, calls `deliver`, records each result and commits; then the
    next claim. `end_run` releases what a run held (a connection)."""

    name: str
    claim_size: int

    def ready(self, rows: Sequence[DueNotification], now: datetime) -> bool: ...

    def deliver(self, rows: Sequence[DueNotification]) -> list[DeliveryResult]: ...

    def end_run(self) -> None: ...

    def close(self) -> None: ...


class NotificationChannel:
    """A channel that delivers one notification at a time, each committed as soon as it is accepted (so a
    crash repeats at most the one in flight). Subclasses implement `deliver_one`."""

    name = "channel"
    claim_size = 1

    def ready(self, rows: Sequence[DueNotification], now: datetime) -> bool:
        return True

    def deliver(self, rows: Sequence[DueNotification]) -> list[DeliveryResult]:
        return [self.deliver_one(row) for row in rows]

    def deliver_one(self, row: DueNotification) -> DeliveryResult:
        raise NotImplementedError

    def end_run(self) -> None:
        return None

    def close(self) -> None:
        return None


class OneAtATime(NotificationChannel):
    """A channel object with `name`, `deliver(notification)` returning a result with `state`, `error` and
    `retry_after` (the Alertmanager channel), and `close()`, run as a Channel."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name

    def deliver_one(self, row: DueNotification) -> DeliveryResult:
        result = self.inner.deliver(row)
        return DeliveryResult(result.state, result.error, getattr(result, "retry_after", None))

    def close(self) -> None:
        self.inner.close()
