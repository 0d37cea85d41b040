"""Pure: report periods and days in the display time zone, as the naive UTC bounds the stores are queried with.

A period is half-open, [start, end). "Last 7 d" ends now and starts 7 × 24 h earlier; a day is a
calendar day of the display time zone, so around a daylight-saving change a day lasts 23 or 25 hours,
and a month's last day ends at the local midnight that begins the next month.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "PERIOD_PATTERN",
    "MAX_PERIOD",
    "Period",
    "day_bounds",
    "days_back",
    "parse_period",
    "local_day",
    "parse_time_of_day",
]

PERIOD_PATTERN = r"^(24h|7d|30d|[1-9][0-9]{0,2}[hd])$"
MAX_PERIOD = timedelta(days=366)
_RELATIVE = re.compile(PERIOD_PATTERN)


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) in naive UTC, with the label a reader sees ("last 7 days", or the dates)."""

    start: datetime
    end: datetime
    label: str

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def previous(self) -> Period:
        """The period of the same length just before this one (what week-over-week compares with)."""
        return Period(self.start - self.length, self.start, f"the {_span(self.length)} before")


def _span(length: timedelta) -> str:
    """7 days, 1 day, 36 hours, 90 minutes: a length as a reader says it."""
    seconds = int(length.total_seconds())
    if seconds % 86400 == 0:
        days = seconds // 86400
        return "day" if days == 1 else ("week" if days == 7 else f"{days} days")
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hours"
    return f"{seconds // 60} minutes"


def _naive_utc(moment: datetime, zone: ZoneInfo) -> datetime:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=zone)
    return aware.astimezone(UTC).replace(tzinfo=None)


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.replace(tzinfo=UTC).astimezone(zone)


def parse_period(
    period: str | None, start: datetime | None, end: datetime | None, now: datetime, zone: ZoneInfo
) -> Period:
    """`period` ("24h", "7d", "30d", any "<n>h" / "<n>d") ending `now`, or `start`/`end` (times without a zone are
    in the display zone; `end` defaults to now, `start` to a week before `end`). Raises ValueError with what
    is wrong."""
    now = now.replace(tzinfo=None)
    if start is not None or end is not None:
        if period is not None:
            raise ValueError("give either period or from/to, not both")
        finish = _naive_utc(end, zone) if end is not None else now
        # `to` alone: the week ending then.
        begin = _naive_utc(start, zone) if start is not None else finish - timedelta(days=7)
        if finish <= begin:
            raise ValueError("to must be after from")
        if finish - begin > MAX_PERIOD:
            raise ValueError("a period is at most 366 days")
        label = f"{_local(begin, zone):%Y-%m-%d %H:%M} to {_local(finish, zone):%Y-%m-%d %H:%M}"
        return Period(begin, finish, label)
    text = period or "7d"
    if not _RELATIVE.fullmatch(text):
        raise ValueError(f"period {text!r}: 24h, 7d, 30d, or a number of hours or days such as 12h or 14d")
    amount, unit = int(text[:-1]), text[-1]
    length = timedelta(hours=amount) if unit == "h" else timedelta(days=amount)
    if length > MAX_PERIOD:
        raise ValueError("a period is at most 366 days")
    words = f"{amount} hours" if unit == "h" else ("1 day" if amount == 1 else f"{amount} days")
    return Period(now - length, now, f"last {words}")


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    """The display zone's calendar day of a naive UTC moment."""
    return moment.replace(tzinfo=UTC).astimezone(zone).date()


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a calendar day of the display zone, in naive UTC (23, 24 or 25 hours long)."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return _naive_utc(start, zone), _naive_utc(end, zone)


def days_back(count: int, now: datetime, zone: ZoneInfo) -> list[date]:
    """The last `count` calendar days of the display zone, today last."""
    today = local_day(now.replace(tzinfo=None), zone)
    return [today - timedelta(days=count - 1 - i) for i in range(count)]


def parse_time_of_day(value: str) -> time:
    """A time of day written HH:MM, 24-hour ("07:00"). Raises ValueError saying what is expected."""
    try:
        hours, minutes = value.strip().split(":")
        if len(hours) > 2 or len(minutes) != 2:
            raise ValueError
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{value!r} is not a time of day such as 07:00 (HH:MM)") from None
