"""Time as the stores hold it: MySQL columns are naive UTC datetimes, InfluxDB speaks epoch nanoseconds."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["aware", "epoch_ns", "utc_naive", "utc_now"]


def utc_now() -> datetime:
    """Now, as the naive UTC datetime the database columns hold."""
    return datetime.now(UTC).replace(tzinfo=None)


def utc_naive(ns: int) -> datetime:
    """Epoch nanoseconds as a naive UTC datetime (microsecond precision, like the columns)."""
    return datetime.fromtimestamp(ns / 1e9, UTC).replace(tzinfo=None)


def epoch_ns(moment: datetime) -> int:
    """A naive UTC datetime as epoch nanoseconds."""
    as_utc = moment.replace(tzinfo=UTC)
    return (int(as_utc.timestamp()) * 1_000_000 + as_utc.microsecond) * 1000


def aware(moment: datetime | None) -> datetime | None:
    """Stored times are naive UTC; the API speaks RFC 3339 with a zone."""
    return None if moment is None else moment.replace(tzinfo=UTC)
