"""Benchmarks of alerting (issue 15), one part per subcommand.

Parts
    delivery    time from the condition (a job's failure committed through the API) to the webhook
                receiver's arrival of its notification, with a real scheduler process
    (the evaluation-time part, rules over the 10,000-machine estate, is a subcommand of its own)

delivery: what it measures
    Starts the API, a webhook receiver process (tests/support/webhook_receiver.py) and one `sendense
    scheduler` with the webhook channel and SENDENSE_ALERT_INTERVAL / SENDENSE_ALERT_DELIVERY_INTERVAL
    as given by each `--configs` entry (`alert:delivery` seconds; default the shipped 15:2, and 2:0.5).
    For each of `--alerts` machines (one job_failed alert each) a job is created and sent one running
    update; then each job's failed terminal update is sent at a random moment within 3 alert intervals
    (so failures land at every phase of the scheduler's cycle). Latency: from the terminal update's 200
    (the failure is committed) to the receiver's record of the notification (same host clock). Prints
    p50 / p90 / p99 / max beside the intervals, and a split from the outbox on the database's clock:
    "wait" from the job's end to the start of the evaluation that saw it (the notification's created_at),
    "evaluate + deliver" from there to the receiver's acceptance (the evaluation's own run and commit,
    then the sender, which the evaluation wakes).
    Reference (the ideal for an interval scheduler): at most one alert interval, on average half of it,
    plus the evaluation's and the delivery's own time.

Target (from the issue)
    p99 < 2 scheduler (alert) intervals.

Usage
    .venv/bin/python bench/alerts.py delivery [--alerts 100] [--configs 15:2,2:0.5] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

import _common as c
import httpx
from sqlalchemy import select

from pipeline.db.tables import alert_notifications, alerts, backup_jobs
from tests.support.faults import KilledProcess
from tests.support.webhook_receiver import WebhookReceiver

WEBHOOK_PORT = 28096


# --- part: delivery (condition -> webhook arrival) --------------------------------------------------------


async def _prepare(client: httpx.AsyncClient, vms: list[str]) -> dict[str, str]:
    """One running job per machine, waiting for its failure."""
    start = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    jobs = {}
    for vm in vms:
        created = await client.post("/api/v1/backups", json={"vm_name": vm, "backup_type": "full",
                                                              "repository_id": "bench-alerts"})  # fmt: skip
        assert created.status_code == 201, created.text
        job_id = created.json()["backup_id"]
        update = {**c.UPDATE_BODY, "timestamp": start}
        assert (await client.post(f"/api/v1/telemetry/backup/{job_id}", json=update)).status_code == 202
        jobs[vm] = job_id
    return jobs


async def _fail_at_random(client: httpx.AsyncClient, jobs: dict[str, str], window: float, rng) -> dict[str, float]:
    """Each job's failure at a random moment of `window` s; returns each machine's commit time (epoch s)."""
    committed: dict[str, float] = {}
    began = time.monotonic()
    moments = sorted((rng.uniform(0, window), vm) for vm in jobs)

    async def fail(at: float, vm: str) -> None:
        await asyncio.sleep(max(0.0, at - (time.monotonic() - began)))
        body = {**c.UPDATE_BODY, "status": "failed", "error_message": "bench: planned failure",
                "timestamp": datetime.now(UTC).isoformat()}  # fmt: skip
        answer = await client.post(f"/api/v1/telemetry/backup/{jobs[vm]}", json=body)
        assert answer.status_code == 200, answer.text
        committed[vm] = time.time()

    await asyncio.gather(*(fail(at, vm) for at, vm in moments))
    return committed


def _arrivals(receiver: WebhookReceiver, prefix: str) -> dict[str, float]:
    first: dict[str, float] = {}
    for r in receiver.accepted():
        body = r.json()
        vm = body.get("vm_name") or ""
        if body.get("rule") == "job_failed" and body.get("state") == "firing" and vm.startswith(prefix):
            first.setdefault(vm, r.at)
    return first


def _outbox_split(engine, prefix: str) -> dict[str, tuple[float, float]]:
    """Per machine: (job ended -> its evaluation began, evaluation began -> accepted) in seconds, database clock."""
    n, j = alert_notifications.c, backup_jobs.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(alerts.c.vm_name, j.ended_seen_at, n.created_at, n.sent_at)
            .join(alerts, alerts.c.id == n.alert_id)
            .join(backup_jobs, backup_jobs.c.id == alerts.c.job_id)
            .where(alerts.c.vm_name.like(f"{prefix}%"), n.channel == "webhook", n.event == "firing")
        ).all()
    return {
        r.vm_name: ((r.created_at - r.ended_seen_at).total_seconds(), (r.sent_at - r.created_at).total_seconds())
        for r in rows
        if r.sent_at is not None and r.ended_seen_at is not None
    }


def _one_config(stack, engine, alert_interval: float, delivery_interval: float, count: int, rng) -> dict:
    prefix = c.run_id(f"alerts-{alert_interval:g}s")
    vms = [f"{prefix}-vm-{i:03d}" for i in range(count)]
    receiver = WebhookReceiver(WEBHOOK_PORT, c.logs_dir() / f"{prefix}-webhook.jsonl").start()
    env = {
        "SENDENSE_ALERT_INTERVAL": str(alert_interval),
        "SENDENSE_ALERT_DELIVERY_INTERVAL": str(delivery_interval),
        "SENDENSE_ALERT_WEBHOOK_URL": receiver.url,
        "SENDENSE_ALERT_WEBHOOK_SECRET": "bench-secret",
        "SENDENSE_SCHEDULER_METRICS_PORT": "0",
        "SENDENSE_STALE_JOB_TIMEOUT": "864000",
    }
    scheduler = KilledProcess(stack, "scheduler", log_path=c.logs_dir() / f"{prefix}-scheduler.log", env=env)
    try:

        async def run() -> dict[str, float]:
            headers = c.AGENT_HEADERS
            async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as client:
                jobs = await _prepare(client, vms)
                scheduler.start()
                deadline = time.monotonic() + 60
                while "scheduler: rollup every" not in scheduler.log_path.read_text(errors="replace"):
                    assert time.monotonic() < deadline, "the scheduler did not start"
                    await asyncio.sleep(0.1)
                await asyncio.sleep(alert_interval)  # its first evaluation (everything earlier) is behind it
                c.log(f"failing {count} jobs at random over {3 * alert_interval:.0f} s")
                return await _fail_at_random(client, jobs, 3 * alert_interval, rng)

        committed = asyncio.run(run())
        deadline = time.monotonic() + 3 * (alert_interval + delivery_interval) + 30
        arrived = _arrivals(receiver, prefix)
        while len(arrived) < count and time.monotonic() < deadline:
            time.sleep(0.2)
            arrived = _arrivals(receiver, prefix)
        split = _outbox_split(engine, prefix)
    finally:
        scheduler.stop()
        receiver.stop()
        c.cleanup_jobs(f"backup-{prefix}")
    latencies = sorted(arrived[vm] - committed[vm] for vm in arrived if vm in committed)
    return {
        "alert_interval": alert_interval,
        "delivery_interval": delivery_interval,
        "alerts": count,
        "arrived": len(latencies),
        "latencies": latencies,
        "enqueue": sorted(s[0] for s in split.values()),
        "deliver": sorted(s[1] for s in split.values()),
    }


def delivery(args: argparse.Namespace) -> int:
    print(c.machine_note())
    rng = random.Random(args.seed)
    configs = [tuple(float(x) for x in part.split(":")) for part in args.configs.split(",")]
    results = []
    with c.bench_stack() as stack, c.api_process(stack, "granian"):
        engine = c.mysql_engine()
        try:
            for alert_interval, delivery_interval in configs:
                c.log(f"alert interval {alert_interval:g} s, delivery interval {delivery_interval:g} s")
                results.append(_one_config(stack, engine, alert_interval, delivery_interval, args.alerts, rng))
        finally:
            engine.dispose()
    rows, ok = [], True
    for r in results:
        lat = r["latencies"]
        p99 = c.percentile(lat, 99) if lat else float("nan")
        met = bool(lat) and r["arrived"] == r["alerts"] and p99 < 2 * r["alert_interval"]
        ok &= met
        rows.append([
            f"{r['alert_interval']:g} s / {r['delivery_interval']:g} s",
            f"{r['arrived']} of {r['alerts']}",
            statistics.median(lat) if lat else float("nan"),
            c.percentile(lat, 90) if lat else float("nan"),
            p99,
            lat[-1] if lat else float("nan"),
            p99 / r["alert_interval"] if lat else float("nan"),
            statistics.median(r["enqueue"]) if r["enqueue"] else float("nan"),
            max(r["enqueue"], default=float("nan")),
            statistics.median(r["deliver"]) if r["deliver"] else float("nan"),
            max(r["deliver"], default=float("nan")),
            c.verdict(met),
        ])  # fmt: skip
    headers = ["alert / delivery interval", "arrived", "p50 s", "p90 s", "p99 s", "max s", "p99 / alert interval",
               "wait p50 s", "wait max s", "evaluate + deliver p50 s", "max s", "p99 < 2 intervals"]  # fmt: skip
    print(c.table(headers, rows, "\nTime from a job failed (committed through the API) to the webhook's arrival"))
    print("wait: job ended -> the evaluation that saw it began; evaluate + deliver: from there to the receiver's "
          "acceptance (the evaluation's run and commit, then the sender it wakes). Ideal: at most one alert interval "
          "plus the evaluation's and the delivery's own time.")  # fmt: skip
    return 0 if ok else 1


# --- dispatch -------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = parser.add_subparsers(dest="part", required=True)
    d = parts.add_parser("delivery", help="time from a job failed to the webhook's arrival")
    d.add_argument("--alerts", type=int, default=100)
    d.add_argument("--configs", default="15:2,2:0.5", help="alert:delivery interval pairs in seconds, comma-separated")
    d.add_argument("--seed", type=int, default=1)
    d.set_defaults(func=delivery)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
