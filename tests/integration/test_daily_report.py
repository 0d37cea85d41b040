"""The daily report e-mail on the real stack: claims per day in MariaDB, scheduler processes killed with -9, and a
real SMTP server process receiving exactly one message for the day with the PDF attached."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time as clock
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from pipeline.reports.daily import due_day
from pipeline.reports.daily_store import DailyReportStore
from pipeline.reports.periods import day_bounds
from tests.conftest import OUTPUT_DIR
from tests.integration.test_report_documents import _figure, pdf_text
from tests.integration.test_reports import _seed
from tests.support.probes import wait_for
from tests.support.smtp_receiver import SmtpReceiver

SMTP_PORT = int(os.environ.get("SENDENSE_TEST_SMTP_PORT", "18025")) + 5


def _day_of(unique: str) -> date:
    """A report day of the distant past that only this test claims."""
    return date(1200, 1, 1) + timedelta(days=int(unique, 16) % 200_000)


def test_a_day_is_claimed_by_one_until_sent_and_taken_over_once_its_claim_expires(engine, unique):
    store = DailyReportStore(engine)
    day = _day_of(unique)
    first = store.claim(day, lease=600)
    assert first is not None and first.attempts == 1
    assert store.claim(day, lease=600) is None  # held by a live scheduler
    store.failed(first, "SMTP server 127.0.0.1:1 cannot be reached", retry_in=0)
    retry = store.claim(day, lease=1)
    assert retry is not None and retry.attempts == 2 and store.row(day)["last_error"].startswith("SMTP server")
    clock.sleep(1.5)  # the holder died: its claim expires
    taken = store.claim(day, lease=600)
    assert taken is not None and taken.attempts == 3
    assert not store.sent(retry, "<old@x>", 1)  # the expired claim cannot mark the day any more
    assert store.sent(taken, "<daily@x>", 12345)
    assert store.claim(day, lease=600) is None and store.claim(day, lease=0) is None  # sent: never again
    row = store.row(day)
    assert (row["state"], row["attempts"], row["message_id"], row["pdf_bytes"]) == ("sent", 3, "<daily@x>", 12345)


def _zone_at_noon() -> str:
    """A fixed-offset zone where it is about noon now: the report day (yesterday there) ended about 12 hours
    ago and the next one starts in about 12, so the due day cannot change during the test."""
    offset = 12 - datetime.now(UTC).hour
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-2 is UTC+2


def _kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_the_daily_report_is_sent_once_through_two_schedulers_and_a_kill(stack, engine, unique, tmp_path):
    zone_name = _zone_at_noon()
    zone = ZoneInfo(zone_name)
    day = due_day(datetime.now(UTC).replace(tzinfo=None), zone, time(0))
    start, end = day_bounds(day, zone)
    # The day's row belongs to this test: a previous run of the suite may have sent the same day.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM daily_reports WHERE report_day = :d"), {"d": day})
    prefix = f"daily-{unique}"
    _seed(engine, [
        {"id": f"{prefix}-{i}", "vm": f"{prefix}-vm", "status": "failed" if i == 0 else "completed",
         "created": start + timedelta(hours=2 + i), "done": start + timedelta(hours=2 + i, minutes=20),
         "size": 10_000, "error": "snapshot quiesce timed out" if i == 0 else None}
        for i in range(3)
    ])  # fmt: skip

    receiver = SmtpReceiver(SMTP_PORT, OUTPUT_DIR / f"smtp-daily-{unique}")
    smtp_env = {k: v for k, v in receiver.settings_env().items() if k != "SENDENSE_ALERT_EMAIL_TO"}
    base = {
        "SENDENSE_DISPLAY_TIMEZONE": zone_name,
        "SENDENSE_DAILY_REPORT_TIME": "00:00",  # passed: the day is due from the start
        "SENDENSE_DAILY_REPORT_RECIPIENTS": "auditor@example.test,ops@example.test",
        "SENDENSE_DAILY_REPORT_INTERVAL": "1",
        "SENDENSE_DAILY_REPORT_CLAIM": "30",
        "SENDENSE_SCHEDULER_METRICS_PORT": "0",
    }
    logs = {name: OUTPUT_DIR / f"scheduler-daily-{unique}-{name}.log" for name in ("a", "b", "c", "b2")}
    procs: list[subprocess.Popen] = []
    # A server that takes the connection and never greets: scheduler A claims the day and hangs in its send.
    tarpit = socket.create_server(("127.0.0.1", 0), backlog=4)
    try:
        tarpit_env = {**smtp_env, "SENDENSE_SMTP_PORT": str(tarpit.getsockname()[1]), "SENDENSE_SMTP_TIMEOUT": "300"}
        a = stack.start_process("scheduler", log_path=logs["a"], env={**base, **tarpit_env})
        procs.append(a)
        wait_for(lambda: (DailyReportStore(engine).row(day) or {}).get("state") == "claimed", timeout=60,
                 interval=0.2, what="scheduler A to claim the day")  # fmt: skip
        assert DailyReportStore(engine).row(day)["claimed_by"].endswith(f":{a.pid}")
        _kill_group(a)  # kill -9 mid-send: its claim stays until it expires

        receiver.start()
        env = {**base, **smtp_env}
        b = stack.start_process("scheduler", log_path=logs["b"], env=env)
        c = stack.start_process("scheduler", log_path=logs["c"], env=env)
        procs += [b, c]
        wait_for(lambda: len(receiver.messages()) >= 1, timeout=120, interval=0.5, what="the day's report")

        def both_looked_again() -> bool:
            return all(f"daily report of {day}: sent already" in logs[n].read_text() for n in ("b", "c"))

        wait_for(both_looked_again, timeout=60, interval=0.5, what="both schedulers to find the day sent")
        _kill_group(b)
        b2 = stack.start_process("scheduler", log_path=logs["b2"], env=env)
        procs.append(b2)
        wait_for(lambda: f"daily report of {day}: sent already" in logs["b2"].read_text(), timeout=60,
                 interval=0.5, what="the restarted scheduler to find the day sent")  # fmt: skip
    finally:
        for proc in procs:
            if proc.poll() is None:
                stack.stop_process(proc)
        tarpit.close()
        receiver.stop()

    messages = receiver.messages()
    assert len(messages) == 1, [m["Subject"] for m in messages]
    row = DailyReportStore(engine).row(day)
    assert (row["state"], row["attempts"]) == ("sent", 2)  # A's attempt, then one taken over after it expired
    message = messages[0]
    assert message["Message-ID"] == f"<daily-report-{day.isoformat()}@alerts.example.test>"
    assert day.isoformat() in message["Subject"] and "auditor@example.test" in message["To"]
    html = message.get_body(("html",)).get_content()
    assert "Backup report: the estate" in html and "data:image" not in html
    shown = re.findall(r'src="cid:([^"]+)"', html)
    pictures = {p["Content-ID"].strip("<>"): p for p in message.walk() if p.get_content_type() == "image/png"}
    assert len(shown) >= 3 and set(shown) == set(pictures)  # every chart of the body travels with it
    assert all(p.get_content().startswith(b"\x89PNG") for p in pictures.values())
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == f"sendense-estate-report-{day.isoformat()}.pdf"
    pdf = attachment.get_content()
    assert pdf.startswith(b"%PDF-") and len(pdf) == row["pdf_bytes"]

    with engine.connect() as conn:
        jobs = conn.execute(
            text("SELECT COUNT(*) FROM backup_jobs WHERE created_at >= :s AND created_at < :e"), {"s": start, "e": end}
        ).scalar_one()
    words = pdf_text(pdf, tmp_path)
    assert f"{day} 00:00 to {day + timedelta(days=1)} 00:00 ({zone_name})" in words
    assert _figure(words, "Jobs") == f"{jobs:,}" and jobs >= 3
    assert "snapshot quiesce timed out" in words
    assert re.search(rf"daily report of {day} sent to 2 recipients", logs["b"].read_text() + logs["c"].read_text())
