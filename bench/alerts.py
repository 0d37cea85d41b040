"""Alert evaluation over a large estate: time per run, and the indexes its reads use.

What it measures (`--part evaluation`)
    10,000 machines and 1,000,000 jobs (bench/estate.py's loader, counters filled), plus 200 running
    jobs and 100 recently failed ones. Then AlertEvaluator.run_once() with the webhook channel configured
    (so every notification is written to the outbox too):
      * the first run (thousands of machines out of their RPO: every alert created and enqueued);
      * ten steady runs (nothing changed: what an evaluation costs every SENDENSE_ALERT_INTERVAL);
      * a run after 100 more jobs failed;
      * reference, in the same run: a primary-key read of backup_jobs;
      * EXPLAIN of every read of the rules: the access type of backup_jobs in each (ALL would be a full scan).

Usage
    .venv/bin/python bench/alerts.py [--machines 10000] [--jobs-per-machine 100] [--steady 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

import _common as c
from estate import load
from sqlalchemy import text


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["evaluation"], default="evaluation")
    parser.add_argument("--machines", type=int, default=10_000)
    parser.add_argument("--jobs-per-machine", type=int, default=100)
    parser.add_argument("--steady", type=int, default=10)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()
    evaluation(args)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("SENDENSE_MYSQL_QUERY_TIMEOUT", "3600")
    sys.exit(main())
