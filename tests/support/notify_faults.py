"""The delivery fault experiment: alerts fire and resolve while scheduler processes are killed -9, the webhook
receiver answers 500 and the SMTP server is stopped; then every notification in the outbox is looked for at
its receiver, by idempotency key.

Shared by `tests/faults/test_notify_faults.py` (short) and `bench/notify_faults.py` (full length). Alerts are
made the way production makes them: jobs of each machine fail (through the API), then later jobs of the same
machines complete, and the real `sendense scheduler` processes evaluate and deliver.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

from pipeline.alerts.delivery.webhook import verify
from pipeline.db.tables import alert_notifications, alerts
from tests.support.devstack import DevStack
from tests.support.faults import KilledProcess, kill_at_random
from tests.support.smtp_receiver import SmtpReceiver
from tests.support.webhook_receiver import WebhookReceiver

__all__ = ["ChannelCount", "DeliveryOutcome", "delivery_fault_experiment"]

SECRET = "fault-webhook-secret"
JOB_TYPES = ("backup", "replication")


@dataclass
class ChannelCount:
    """One channel: notifications in the outbox against what its receiver accepted."""

    channel: str
    outbox: int = 0
    received_distinct: int = 0
    duplicates: int = 0
    """Deliveries beyond the first of a key (the same notification accepted twice)."""
    lost: int = 0
    not_sent: int = 0
    """Outbox rows still pending (or refused) when the experiment ended."""
    failures_seen: int = 0
    """Requests the receiver answered with an error (the webhook's 500s): not deliveries."""


@dataclass
class DeliveryOutcome:
    name: str
    alerts: int = 0
    expected_per_channel: int = 0
    kills: int = 0
    channels: dict[str, ChannelCount] = field(default_factory=dict)
    figures: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def check(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


def _env(webhook: WebhookReceiver, smtp: SmtpReceiver, intervals: dict[str, str]) -> dict[str, str]:
    return {
        "SENDENSE_ALERT_WEBHOOK_URL": webhook.url,
        "SENDENSE_ALERT_WEBHOOK_SECRET": SECRET,
        "SENDENSE_ALERT_WEBHOOK_TIMEOUT": "3",
        "SENDENSE_ALERT_EMAIL_MIN_SEVERITY": "info",
        "SENDENSE_SMTP_TIMEOUT": "5",
        "SENDENSE_SCHEDULER_METRICS_PORT": "0",  # two schedulers on one host: neither needs the port
        "SENDENSE_REAPER_INTERVAL": "3600",
        **smtp.settings_env(),
        **intervals,
    }


async def _finish_jobs(api_url: str, token: str, vms: list[str], status: str, concurrency: int = 16) -> int:
    """One job per machine and job type, ended `status` (failed with a reason, or completed): through the
    API as an agent would. Returns the jobs ended."""
    headers = {"Authorization": f"Bearer {token}"}
    start = datetime.now(UTC) - timedelta(minutes=5)
    gate = asyncio.Semaphore(concurrency)
    ended = 0

    async def one(client: httpx.AsyncClient, vm: str, job_type: str) -> None:
        nonlocal ended
        async with gate:
            body = {"vm_name": vm, "backup_type": "full", "repository_id": "fault-repo", "job_type": job_type}
            created = await client.post("/api/v1/backups", json=body)
            assert created.status_code == 201, created.text
            job_id = created.json()["backup_id"]
            end = (start + timedelta(seconds=30)).isoformat()
            final = {"bytes_transferred": 10, "total_bytes": 10, "transfer_speed_bps": 1000, "progress_percent": 100.0,
                     "current_phase": "done", "status": status, "timestamp": end}  # fmt: skip
            if status == "failed":
                final["error_message"] = "snapshot could not be created"
            answer = await client.post(f"/api/v1/telemetry/{job_type}/{job_id}", json=final)
            assert answer.status_code == 200, answer.text
            ended += 1

    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=60) as client:
        await asyncio.gather(*(one(client, vm, t) for vm in vms for t in JOB_TYPES))
    return ended


def _outbox(engine, prefix: str) -> list:
    n = alert_notifications.c
    with engine.connect() as conn:
        return conn.execute(
            select(n.channel, n.idempotency_key, n.state, n.event, n.payload, n.attempts)
            .join(alerts, alerts.c.id == n.alert_id)
            .where(alerts.c.vm_name.like(f"{prefix}-vm-%"), alerts.c.rule == "job_failed")
        ).all()


def _firing(engine, prefix: str) -> int:
    with engine.connect() as conn:
        return len(
            conn.execute(
                select(alerts.c.id).where(alerts.c.vm_name.like(f"{prefix}-vm-%"), alerts.c.state == "firing")
            ).all()
        )


def _wait_for_log(path: Path, line: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and line in path.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} never said {line!r}")
        time.sleep(0.1)


def _settled(engine, prefix: str, expected: int) -> bool:
    """Every alert fired and resolved, and each of its `expected` notifications (both channels) delivered."""
    rows = _outbox(engine, prefix)
    return len(rows) == expected and all(r.state == "sent" for r in rows)


def delivery_fault_experiment(
    stack: DevStack,
    engine,
    *,
    api_url: str,
    prefix: str,
    machines: int,
    kills: int,
    gap: tuple[float, float],
    webhook_failing: float,
    smtp_stopped: tuple[float, float],
    resolve_after: float,
    log_dir: Path,
    webhook_port: int,
    smtp_port: int,
    seed: int,
    intervals: dict[str, str] | None = None,
    timeout: float = 180.0,
) -> DeliveryOutcome:
    """`machines` × 2 job types fail (one job_failed alert each) and complete `resolve_after` s after every
    alert has fired (each alert resolves). Two `sendense scheduler` processes evaluate and deliver to a
    webhook receiver answering 500 from the start until `webhook_failing` s after the alerts fired, and to an
    SMTP server stopped `smtp_stopped[0]` s after they fired for `smtp_stopped[1]` s, while one of the
    schedulers at random is killed -9 (its process group) `kills` times from the start."""
    alerts_made = machines * len(JOB_TYPES)
    outcome = DeliveryOutcome(
        f"{kills} scheduler kills -9, 2 schedulers, {alerts_made} alerts fired and resolved, webhook 500 until "
        f"{webhook_failing:.0f} s after they fired, SMTP stopped {smtp_stopped[1]:.0f} s",
        alerts=alerts_made,
        expected_per_channel=2 * alerts_made,
    )
    intervals = intervals or {
        "SENDENSE_ALERT_INTERVAL": "0.5",
        "SENDENSE_ALERT_DELIVERY_INTERVAL": "0.25",
        "SENDENSE_ALERT_HOLD_DOWN": "1",
        "SENDENSE_ALERT_RETRY_BASE": "0.5",
        "SENDENSE_ALERT_RETRY_MAX": "2",
    }
    outcome.figures["scheduler settings"] = intervals
    webhook = WebhookReceiver(webhook_port, log_dir / f"{prefix}-webhook.jsonl")
    smtp = SmtpReceiver(smtp_port, log_dir / f"{prefix}-smtp")
    vms = [f"{prefix}-vm-{n:03d}" for n in range(machines)]
    rng = random.Random(seed)
    procs: list[KilledProcess] = []
    webhook.start()
    smtp.start()
    try:
        env = _env(webhook, smtp, intervals)
        procs = [
            KilledProcess(stack, "scheduler", log_path=log_dir / f"{prefix}-scheduler-{k}.log", env=env)
            for k in range(2)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:  # a busy machine takes seconds to start one: the faults begin once both run
            _wait_for_log(proc.log_path, "scheduler: rollup every")

        async def smtp_outage() -> None:
            await asyncio.sleep(smtp_stopped[0])
            await asyncio.to_thread(smtp.stop)
            await asyncio.sleep(smtp_stopped[1])
            await asyncio.to_thread(smtp.start)

        async def resolve() -> None:
            await asyncio.sleep(resolve_after)
            await _finish_jobs(api_url, stack.agent_token, vms, "completed")
            outcome.figures["jobs completed at (s)"] = round(time.monotonic() - started, 1)

        async def scenario() -> None:
            await _finish_jobs(api_url, stack.agent_token, vms, "failed")
            outcome.figures["jobs failed at (s)"] = round(time.monotonic() - started, 1)
            # Each alert must have fired before its job completes, or there is nothing to resolve. The kills
            # make that moment vary, so the receivers' outages are timed from it.
            deadline = time.monotonic() + 60
            while await asyncio.to_thread(_firing, engine, prefix) < alerts_made:
                assert time.monotonic() < deadline, "the alerts did not all fire within 60 s"
                await asyncio.sleep(0.2)
            outcome.figures["every alert firing at (s)"] = round(time.monotonic() - started, 1)
            await asyncio.to_thread(webhook.answer, 500, webhook_failing)
            await asyncio.gather(smtp_outage(), resolve())

        async def run() -> None:
            await asyncio.gather(scenario(), kill_at_random(procs, kills, rng, gap=gap))

        started = time.monotonic()
        webhook.answer(500)  # from the first notification on, until `webhook_failing` s after the last alert fired
        asyncio.run(run())
        outcome.figures["faults over at (s)"] = round(time.monotonic() - started, 1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not _settled(engine, prefix, 2 * outcome.expected_per_channel):
            time.sleep(0.5)
        outcome.figures["everything delivered at (s)"] = round(time.monotonic() - started, 1)
    finally:
        for proc in procs:
            proc.stop()
        webhook.stop()
        smtp.stop()
    outcome.kills = sum(p.kills for p in procs)
    _count(outcome, engine, prefix, webhook, smtp)
    return outcome


def _count(outcome: DeliveryOutcome, engine, prefix: str, webhook: WebhookReceiver, smtp: SmtpReceiver) -> None:
    rows = _outbox(engine, prefix)
    by_channel: dict[str, dict] = {"webhook": {}, "email": {}}
    for r in rows:
        by_channel.setdefault(r.channel, {})[r.idempotency_key] = r
    requests = [r for r in webhook.requests() if r.key in by_channel["webhook"]]
    accepted = Counter(r.key for r in requests if r.answered == 200)
    mailed = Counter({k: n for k, n in smtp.keys().items() if k in by_channel["email"]})
    for channel, received in (("webhook", accepted), ("email", mailed)):
        stored = by_channel[channel]
        count = ChannelCount(channel, outbox=len(stored))
        count.received_distinct = len(set(received) & set(stored))
        count.duplicates = sum(n - 1 for n in received.values() if n > 1)
        count.lost = len(set(stored) - set(received))
        count.not_sent = sum(r.state != "sent" for r in stored.values())
        outcome.channels[channel] = count
        outcome.check(count.outbox == outcome.expected_per_channel,
                      f"{channel}: {count.outbox} notifications in the outbox, {outcome.expected_per_channel} "
                      "transitions made (one per fire and one per resolve)")  # fmt: skip
        outcome.check(count.lost == 0, f"{channel}: {count.lost} notifications never arrived")
        outcome.check(count.not_sent == 0, f"{channel}: {count.not_sent} notifications not marked sent")
        outcome.check(count.duplicates <= outcome.kills,
                      f"{channel}: {count.duplicates} duplicates, more than one per kill")  # fmt: skip
    outcome.channels["webhook"].failures_seen = sum(r.answered != 200 for r in requests)
    outcome.check(outcome.channels["webhook"].failures_seen > 0, "the webhook receiver's 500s were never seen")
    outcome.check(any(r.attempts > 1 for r in by_channel["email"].values()), "the SMTP outage delayed nothing")
    stored = by_channel["webhook"]
    wrong = [
        r.key
        for r in requests
        if r.answered == 200
        and (r.json() != stored[r.key].payload or not verify(r.body, r.headers["x-sendense-signature"], SECRET))
    ]
    outcome.check(not wrong, f"webhook bodies that are not the stored payload or not signed: {wrong[:5]}")
    for channel, stored in by_channel.items():
        attempts = Counter(min(r.attempts, 5) for r in stored.values())
        outcome.figures[f"{channel}: attempts per notification (5: 5 or more)"] = dict(sorted(attempts.items()))
