"""Benchmarks of alerting (issue 15), one part per `--part`: `evaluation`, the rules over a large estate (time
per run, and the indexes its reads use); `delivery`, the time from a condition to the webhook's arrival.

evaluation: what it measures
    10,000 machines and 1,000,000 jobs (bench/estate.py's loader, counters filled), plus 200 running
    jobs and 100 recently failed ones. Then AlertEvaluator.run_once() with the webhook channel configured
    (so every notification is written to the outbox too):
      * the first run (thousands of machines out of their RPO: every alert created and enqueued);
      * ten steady runs (nothing changed: what an evaluation costs every SENDENSE_ALERT_INTERVAL);
      * a run after 100 more jobs failed;
      * reference, in the same run: a primary-key read of backup_jobs;
      * EXPLAIN of every read of the rules: the access type of backup_jobs in each (ALL would be a full scan).

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

Targets (from the issue)
    evaluation: < 2 s per run, no full scan of backup_jobs; delivery: p99 < 2 scheduler (alert) intervals.

Usage
    .venv/bin/python bench/alerts.py [--part evaluation] [--machines 10000] [--jobs-per-machine 100] [--steady 10]
    .venv/bin/python bench/alerts.py --part delivery [--alerts 100] [--configs 15:2,2:0.5] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

import _common as c
import httpx
from estate import load
from sqlalchemy import select, text

from pipeline.db.tables import alert_notifications, alerts, backup_jobs
from tests.support.faults import KilledProcess
from tests.support.webhook_receiver import WebhookReceiver

# --- part: evaluation (rules over the estate) ---------------------------------------------------------


def _seed_live(prefix: str, machines: int) -> None:
    """Running jobs (some stalled), and failed ones, by plain SQL on the estate's machines."""
    engine = c.mysql_engine()
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        for i in range(200):
            vm = f"{prefix}-vm-{i * (machines // 200):05d}"
            conn.execute(
                text(
                    "INSERT INTO backup_jobs (id, vm_name, repository_id, backup_type, job_type, status, created_at, "
                    "started_at, last_telemetry_at, last_seen_at, progress_seen_at, progress_percent, "
                    "external_change_at) VALUES (:id, :vm, 'repo-0', 'incremental', 'backup', 'running', :t, :t, "
                    ":now, :now, :progress, 40, NULL)"
                ),
                {
                    "id": f"{prefix}-run-{i}",
                    "vm": vm,
                    "t": now - timedelta(hours=2),
                    "now": now,
                    "progress": now - timedelta(minutes=30 if i % 10 == 0 else 0),
                },  # fmt: skip
            )
    engine.dispose()


def _fail(prefix: str, machines: int, tag: str, count: int) -> None:
    engine = c.mysql_engine()
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        for i in range(count):
            conn.execute(
                text(
                    "INSERT INTO backup_jobs (id, vm_name, repository_id, backup_type, job_type, status, created_at, "
                    "started_at, completed_at, ended_seen_at, error_message, external_change_at) VALUES (:id, :vm, "
                    "'repo-0', 'incremental', 'backup', 'failed', :t, :t, :now, :now, 'telemetry timeout', NULL)"
                ),
                {
                    "id": f"{prefix}-{tag}-{i}",
                    "vm": f"{prefix}-vm-{(i * 37) % machines:05d}",
                    "t": now - timedelta(minutes=20),
                    "now": now,
                },  # fmt: skip
            )
    engine.dispose()


def _explain(engine) -> list[list[str]]:
    """The access type of backup_jobs (and the index) in each read the rules make."""
    from pipeline.alerts import facts

    since = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)
    reads = [
        ("pending and running jobs", facts._RUNNING, {}),
        ("usual durations of one machine", facts._USUAL, {"vm": "x", "type": "full", "runs": 10}),
        ("machines with jobs ended, rolled up or changed", facts._TOUCHED, {"since": since}),
        ("newest finished jobs of one machine", facts._NEWEST, {"vm": "x", "type": "backup", "depth": 50}),
        ("rollups set aside", facts._SET_ASIDE, {}),
    ]
    rows = []
    with engine.connect() as conn:
        for name, query, params in reads:
            plan = conn.execute(text("EXPLAIN " + query.text), params).mappings().all()
            used = [f"{p['type']} ({p['key'] or '-'})" for p in plan if p["table"] == "backup_jobs"]
            rows.append([name, ", ".join(used)])
    return rows


def evaluation(args) -> None:
    prefix = c.run_id("alerts")
    with c.bench_stack():
        load(prefix, args.machines, args.jobs_per_machine)
        _seed_live(prefix, args.machines)
        _fail(prefix, args.machines, "failed", 100)
        from pipeline.alerts.evaluator import AlertEvaluator
        from pipeline.alerts.heartbeats import HeartbeatStore
        from pipeline.alerts.store import AlertStore
        from pipeline.settings import load_settings

        engine = c.mysql_engine()
        try:
            alert_settings = dataclasses.replace(load_settings().alerts, webhook_url="http://127.0.0.1:9/bench")
            evaluator = AlertEvaluator(AlertStore(engine), HeartbeatStore(engine), alert_settings, 86_400)
            rows = []
            t = time.perf_counter()
            first = evaluator.run_once()
            rows.append(["first run (every alert created)", (time.perf_counter() - t) * 1000, "-",
                         f"{first.changes:,}", f"{first.notifications:,}"])  # fmt: skip
            steady, last = [], first
            for _ in range(args.steady):
                t = time.perf_counter()
                last = evaluator.run_once()
                steady.append(time.perf_counter() - t)
            rows.append([f"steady run (median, max of {args.steady})", statistics.median(steady) * 1000,
                         max(steady) * 1000, f"{last.changes:,}", f"{last.notifications:,}"])  # fmt: skip
            _fail(prefix, args.machines, "more", 100)
            t = time.perf_counter()
            after = evaluator.run_once()
            rows.append(["run after 100 more jobs failed", (time.perf_counter() - t) * 1000, "-",
                         f"{after.changes:,}", f"{after.notifications:,}"])  # fmt: skip
            with engine.connect() as conn:
                t = time.perf_counter()
                for i in range(100):
                    conn.execute(text("SELECT * FROM backup_jobs WHERE id = :id"), {"id": f"{prefix}-{i}"}).all()
                pk = (time.perf_counter() - t) / 100
                firing = conn.execute(text("SELECT COUNT(*) FROM alerts WHERE state = 'firing'")).scalar_one()
            rows.append(["reference: primary-key read", pk * 1000, "-", "-", "-"])
            explained = _explain(engine)
        finally:
            with engine.begin() as conn:  # this run's alerts and outbox rows go with it
                conn.execute(text("DELETE FROM alerts WHERE vm_name LIKE :like OR alert_key LIKE :key"),
                             {"like": f"{prefix}%", "key": "pipeline_unhealthy:%"})  # fmt: skip
            engine.dispose()
            if not args.keep_data:
                c.cleanup_jobs(prefix)
                with c.mysql_engine().begin() as conn:
                    conn.execute(text("DELETE FROM machines WHERE vm_name LIKE :like"), {"like": f"{prefix}-vm-%"})
    print(c.machine_note())
    print(
        c.table(
            ["run", "ms", "max ms", "alert changes", "notifications enqueued"],
            rows,
            f"\nAlert evaluation: {args.machines:,} machines, {args.machines * args.jobs_per_machine:,} jobs, "
            f"200 running (20 stalled), {firing:,} alerts firing after the runs; target < 2,000 ms a run: "
            f"{c.verdict(max(steady) < 2.0)}",
        )
    )
    print(c.table(["read of the rules", "backup_jobs access (index)"], explained, "\nEXPLAIN"))


# --- part: delivery (condition -> webhook arrival) ----------------------------------------------------

WEBHOOK_PORT = 28096


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


# --- dispatch -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["evaluation", "delivery"], default="evaluation")
    parser.add_argument("--machines", type=int, default=10_000, help="evaluation: machines of the estate")
    parser.add_argument("--jobs-per-machine", type=int, default=100, help="evaluation")
    parser.add_argument("--steady", type=int, default=10, help="evaluation: steady runs timed")
    parser.add_argument("--keep-data", action="store_true", help="evaluation: keep the estate")
    parser.add_argument("--alerts", type=int, default=100, help="delivery: alerts (one machine each) per interval pair")
    parser.add_argument("--configs", default="15:2,2:0.5", help="delivery: alert:delivery interval pairs in seconds")
    parser.add_argument("--seed", type=int, default=1, help="delivery: seed of the failures' moments")
    args = parser.parse_args()
    if args.part == "delivery":
        return delivery(args)
    evaluation(args)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("SENDENSE_MYSQL_QUERY_TIMEOUT", "3600")
    sys.exit(main())
