"""DailyReportStore: who sends the daily report of a day, and whether it was sent; owns `daily_reports`.

Once per day whatever runs: a scheduler claims the day in one short transaction (the row inserted, or, locked
with FOR UPDATE, taken over when its claim expired or its retry is due), renders and sends outside any
transaction, then marks it sent with its own claim token. A row marked sent is never claimed again. A
scheduler killed while it holds a claim leaves it to expire (`lease` seconds, far above the time a render
and a send take); another takes it over then. What is left is the moment between the SMTP server's
acceptance and the mark: a crash there sends the day again, with the same Message-ID (a receiver may
drop it), as the alert outbox does (pipeline/alerts/delivery/sender.py).

Every time is the database's (UTC_TIMESTAMP), so schedulers on hosts whose clocks differ agree on expiry.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, select, text, update
from sqlalchemy.dialects.mysql import insert as mysql_insert

from pipeline.db.tables import daily_reports

__all__ = ["CLAIMED", "FAILED", "SENT", "DailyClaim", "DailyReportStore"]

CLAIMED, SENT, FAILED = "claimed", "sent", "failed"
_NOW = text("SELECT UTC_TIMESTAMP(6)")


@dataclass(frozen=True, slots=True)
class DailyClaim:
    """The right to send `day`'s report until `expires_at` (this is attempt number `attempts`)."""

    day: date
    token: str
    attempts: int
    expires_at: datetime


def _who() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:255]


def _held(claim: DailyClaim) -> tuple:
    """The day's row while this claim is still its own (not expired and taken over, not given back)."""
    return (
        daily_reports.c.report_day == claim.day,
        daily_reports.c.claim_token == claim.token,
        daily_reports.c.state == CLAIMED,
    )


class DailyReportStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def state(self, day: date) -> str | None:
        """The day's state (None: nobody has tried it yet): a cheap look before claiming."""
        with self.engine.connect() as conn:
            return conn.execute(select(daily_reports.c.state).where(daily_reports.c.report_day == day)).scalar()

    def claim(self, day: date, lease: float) -> DailyClaim | None:
        """The day's claim for this process, or None: sent already, claimed by a live scheduler, or its retry
        not due yet."""
        token = uuid.uuid4().hex
        with self.engine.connect() as conn, conn.begin():
            now = conn.execute(_NOW).scalar_one()
            expires = now + timedelta(seconds=lease)
            inserted = conn.execute(
                mysql_insert(daily_reports)
                .prefix_with("IGNORE")
                .values(
                    report_day=day,
                    state=CLAIMED,
                    attempts=1,
                    claim_token=token,
                    claimed_by=_who(),
                    claim_expires_at=expires,
                    created_at=now,
                )  # fmt: skip
            ).rowcount
            if inserted == 1:
                return DailyClaim(day, token, 1, expires)
            row = conn.execute(select(daily_reports).where(daily_reports.c.report_day == day).with_for_update()).first()
            if row is None or row.state == SENT:
                return None
            if row.state == CLAIMED and row.claim_expires_at is not None and row.claim_expires_at > now:
                return None
            if row.state == FAILED and row.next_attempt_at is not None and row.next_attempt_at > now:
                return None
            conn.execute(
                update(daily_reports)
                .where(daily_reports.c.report_day == day)
                .values(
                    state=CLAIMED,
                    attempts=row.attempts + 1,
                    claim_token=token,
                    claimed_by=_who(),
                    claim_expires_at=expires,
                )  # fmt: skip
            )
            return DailyClaim(day, token, row.attempts + 1, expires)

    def sent(self, claim: DailyClaim, message_id: str, pdf_bytes: int) -> bool:
        """Mark the day sent; False when this claim is no longer the day's (it expired and was taken over)."""
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    update(daily_reports)
                    .where(*_held(claim))
                    .values(
                        state=SENT,
                        sent_at=text("UTC_TIMESTAMP(6)"),
                        message_id=message_id,
                        pdf_bytes=pdf_bytes,
                        claim_expires_at=None,
                        last_error=None,
                    )  # fmt: skip
                ).rowcount
                == 1
            )

    def failed(self, claim: DailyClaim, error: str, retry_in: float) -> None:
        """Give the claim back with the error; the day is tried again `retry_in` seconds from now."""
        with self.engine.begin() as conn:
            conn.execute(
                update(daily_reports)
                .where(*_held(claim))
                .values(
                    state=FAILED,
                    last_error=error[:4000],
                    claim_expires_at=None,
                    next_attempt_at=text("UTC_TIMESTAMP(6) + INTERVAL :s SECOND").bindparams(s=int(retry_in)),
                )  # fmt: skip
            )

    def row(self, day: date) -> dict | None:
        """The day's row as stored (tests and `sendense` diagnostics)."""
        with self.engine.connect() as conn:
            found = conn.execute(select(daily_reports).where(daily_reports.c.report_day == day)).first()
        return None if found is None else dict(found._mapping)
