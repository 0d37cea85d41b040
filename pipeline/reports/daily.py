"""The daily report e-mail: which day is due (pure), and DailyReporter, which claims it, renders it and sends it.

At the configured time of day in the display time zone, the previous calendar day's estate report is due:
the HTML document as the body, its PDF attached, through pipeline/mail.py. A scheduler that was down at that
time sends it when it starts later the same day (the day stays due until midnight); claims in
`daily_reports` (pipeline/reports/daily_store.py) make it once per day across schedulers and restarts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from pipeline.mail import Attachment, InlineImage, MailNotSent, SmtpConfig, compose, send_mail
from pipeline.reports.daily_store import DailyReportStore
from pipeline.reports.document import EstateDocument
from pipeline.reports.inputs import read_estate_document
from pipeline.reports.periods import Period, day_bounds, parse_time_of_day

__all__ = ["DailyRun", "DailyReporter", "due_day", "parse_time_of_day", "report_period", "retry_delay"]

log = logging.getLogger(__name__)


def due_day(now: datetime, zone: ZoneInfo, at: time) -> date | None:
    """The day whose report is due at `now` (naive UTC): yesterday in `zone` once today's `at` has passed
    there, else None (yesterday's is not due yet, and the day before's was due yesterday)."""
    local = now.replace(tzinfo=UTC).astimezone(zone)
    if local.time().replace(tzinfo=None) < at:
        return None
    return local.date() - timedelta(days=1)


def report_period(day: date, zone: ZoneInfo) -> Period:
    """The calendar day `day` of `zone` (23, 24 or 25 hours) as a report period."""
    start, end = day_bounds(day, zone)
    return Period(start, end, f"{day:%A %d %B %Y}")


def retry_delay(attempts: int) -> float:
    """Seconds before a failed send is tried again: 1, 2, 4 … minutes, at most an hour."""
    return float(min(60 * 2 ** max(0, attempts - 1), 3600))


@dataclass
class DailyRun:
    """What one look did: `state` not-due, done (sent before, or another scheduler holds it), sent, failed."""

    state: str
    day: date | None = None
    error: str | None = None


def _summary_line(doc: EstateDocument) -> str:
    figures = dict(doc.figures)
    return f"{figures['Jobs']} jobs, {figures['Success rate']} success, {figures['Failed']} failed"


class DailyReporter:
    """Sends the daily report; safe to run in every scheduler at once."""

    def __init__(self, engine: Engine, smtp: SmtpConfig, recipients: tuple[str, ...], zone: ZoneInfo, at: time,
                 rpo_default: int, lease: float = 600.0) -> None:  # fmt: skip
        self.engine = engine
        self.store = DailyReportStore(engine)
        self.smtp = smtp
        self.recipients = recipients
        self.zone = zone
        self.at = at
        self.rpo_default = rpo_default
        self.lease = lease
        self._told: set[tuple[date, str]] = set()

    def run_once(self, now: datetime | None = None) -> DailyRun:
        now = now or datetime.now(UTC).replace(tzinfo=None)
        day = due_day(now, self.zone, self.at)
        if day is None:
            return DailyRun("not-due")
        if self.store.state(day) == "sent":
            return self._done(day, "sent already")
        claim = self.store.claim(day, self.lease)
        if claim is None:
            return self._done(day, "held by another scheduler, or waiting for its retry")
        try:
            message, size = self._message(day, now)
            send_mail(self.smtp, message)
        except MailNotSent as exc:
            self.store.failed(claim, str(exc), retry_delay(claim.attempts))
            log.warning("daily report of %s not sent (attempt %d): %s", day, claim.attempts, exc)
            return DailyRun("failed", day, str(exc))
        except Exception as exc:
            self.store.failed(claim, f"{type(exc).__name__}: {exc}", retry_delay(claim.attempts))
            raise
        if not self.store.sent(claim, message["Message-ID"], size):
            log.warning("daily report of %s sent, but its claim had expired and was taken over", day)
        log.info("daily report of %s sent to %d recipients (%d bytes of PDF)", day, len(self.recipients), size)
        return DailyRun("sent", day)

    def _done(self, day: date, why: str) -> DailyRun:
        if (day, why) not in self._told:  # once per day, reason and process (a restarted one says it again)
            self._told.add((day, why))
            log.info("daily report of %s: %s", day, why)
        return DailyRun("done", day)

    def _message(self, day: date, now: datetime):
        period = report_period(day, self.zone)
        doc = read_estate_document(self.engine, period, self.zone, self.rpo_default, now)
        # Imported here: matplotlib and WeasyPrint take a second to import, which every scheduler start
        # (and restart after a crash) would pay for a job that runs once a day.
        from pipeline.reports.render import draw_estate_charts, estate_html, html_to_pdf, pdf_filename

        charts = draw_estate_charts(doc)
        pdf = html_to_pdf(estate_html(doc, charts))
        # The body shows the same charts as parts of the message: mail clients do not show data: URIs.
        cids = {id(c): f"chart-{i}.{day.isoformat()}@{self.smtp.domain}" for i, c in enumerate(charts)}
        html = estate_html(doc, charts, src=lambda c: f"cid:{cids[id(c)]}")
        text = (
            f"Sendense daily report for {day.isoformat()} ({self.zone.key}): {_summary_line(doc)}.\n"
            + "\n".join(f"{label}: {value}" for label, value in doc.figures)
            + ("\n\n" + "\n".join(doc.sentences) if doc.sentences else "")
            + "\n\nThe full report is attached as a PDF.\n"
        )
        message = compose(
            subject=f"Sendense daily report {day.isoformat()}: {_summary_line(doc)}",
            text=text,
            html=html,
            sender=self.smtp.sender,
            to=self.recipients,
            # The same for every attempt of the day: a repeat after a crash is recognisable as one.
            message_id=f"<daily-report-{day.isoformat()}@{self.smtp.domain}>",
            attachments=[
                Attachment(pdf_filename("estate", "report", day.isoformat()) + ".pdf", pdf, "application/pdf")
            ],
            inline=[InlineImage(cids[id(c)], c.png) for c in charts],
        )
        return message, len(pdf)
