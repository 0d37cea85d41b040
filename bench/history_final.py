"""Benchmark 8: the history of a finished job whose rollup has not run, beside its live and stored answers.

What it measures
    For each size in `--sizes` (1,000 / 17,280 / 100,000 points) and each of `--repeats` jobs: a job
    created through `POST /api/v1/backups`, its job-level points written directly to InfluxDB (one every
    `--interval` s, ending now, the API's tags and fields), then, in this order, for the same job:
      1. live: its row marked running -> `live_snapshots` (`--requests` sequential requests);
      2. finished, not rolled up: its row marked completed (no scheduler runs) -> `rolled_up` computed on
         the spot by the API (`pipeline/read/finished.py`): the first answer (uncached: the computation)
         is one sample per job; then `--requests` more (cached: the job's row read, then the kept answer);
      3. reference: the same computation in this process (`JobSummarizer.summarize`, no HTTP, no cache);
      4. stored: rolled up by the scheduler's `RollupJob` -> `rolled_up` from MySQL (`--requests`), and the
         computed summary compared with the stored one, field for field.
    Each job gets its own points, so every "first" answer is a real computation.

Usage
    .venv/bin/python bench/history_final.py [--sizes 1000,17280,100000] [--repeats 3] [--requests 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

import _common as c
import httpx
from history import sequential, write_points


def _timed_get(client: httpx.Client, job_id: str, expect: str) -> tuple[float, dict]:
    t = time.perf_counter()
    r = client.get(f"/api/v1/telemetry/history/{job_id}")
    elapsed = time.perf_counter() - t
    body = r.json()
    if r.status_code != 200 or body.get("data_source") != expect:
        raise RuntimeError(f"{job_id}: expected {expect}, got {r.status_code} {r.text[:300]}")
    return elapsed, body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,17280,100000", help="points per job, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="jobs per size (one uncached answer each)")
    parser.add_argument("--requests", type=int, default=100, help="sequential requests per repeated measurement")
    parser.add_argument("--interval", type=int, default=5, help="seconds between a job's points")
    parser.add_argument("--server", choices=["granian", "uvicorn"], default="granian")
    parser.add_argument("--keep-data", action="store_true", help="keep this run's jobs and points")
    c.add_api_env_option(parser)
    args = parser.parse_args()
    api_env = c.api_env_from(args)
    sizes = [int(s) for s in args.sizes.split(",")]
    prefix = c.run_id("final")
    vm_name = "bench VM (history final)"
    figures: dict[int, dict[str, list[float]]] = {}
    equal: dict[int, list[bool]] = {}
    with c.bench_stack() as stack, c.api_process(stack, args.server, api_env):
        from sqlalchemy import select

        from pipeline.db.tables import backup_jobs
        from pipeline.rollup.reader import TelemetryReader
        from pipeline.rollup.summary import SUMMARY_COLUMNS, JobSummarizer
        from pipeline.scheduler import SchedulerJobs
        from pipeline.settings import load_settings
        from pipeline.tsdb.influx import SyncInflux

        settings = load_settings()
        engine = c.mysql_engine()
        influx = SyncInflux(settings.influx)
        summarizer = JobSummarizer(TelemetryReader(influx, settings.influx.raw_rp), settings.scheduler.chart_max_points)
        scheduler = SchedulerJobs(settings)
        client = httpx.Client(base_url=stack.api_url, headers=c.AGENT_HEADERS, timeout=120.0)
        for size in sizes:
            f = figures[size] = {k: [] for k in ("live", "first", "cached", "reference", "stored")}
            equal[size] = []
            for n in range(args.repeats):
                job_id = f"{prefix}-{size}-{n}"
                asyncio.run(c.create_jobs(stack.api_url, [job_id], prime=False))
                now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
                c.log(f"{job_id}: writing {size:,} points")
                first_ms, last_ms = write_points(job_id, vm_name, size, args.interval, now)
                started = datetime.fromtimestamp(first_ms / 1000, UTC).replace(tzinfo=None)
                with engine.begin() as conn:
                    conn.exec_driver_sql(
                        "UPDATE backup_jobs SET vm_name = %s, status = 'running', started_at = %s, "
                        "last_telemetry_at = %s, bytes_transferred = 123456789, total_bytes = %s, "
                        "transfer_speed_bps = 150000000, progress_percent = 99.5, current_phase = 'transferring' "
                        "WHERE id = %s",
                        (vm_name, started, now, 10**15, job_id),
                    )

                def get(job_id: str = job_id, expect: str = "live_snapshots") -> None:
                    _timed_get(client, job_id, expect)

                c.log(f"{job_id}: live, {args.requests} requests")
                f["live"] += sequential(get, args.requests, warmup=5)
                with engine.begin() as conn:
                    conn.exec_driver_sql(
                        "UPDATE backup_jobs SET status = 'completed', completed_at = %s, progress_percent = 100, "
                        "current_phase = 'completed' WHERE id = %s",
                        (now + timedelta(seconds=1), job_id),
                    )
                first, computed = _timed_get(client, job_id, "rolled_up")
                f["first"].append(first)
                c.log(f"{job_id}: first finished answer {first * 1000:.0f} ms; cached, {args.requests} requests")
                f["cached"] += sequential(lambda job_id=job_id: get(job_id, "rolled_up"), args.requests, warmup=5)
                with engine.connect() as conn:
                    row = conn.execute(select(*SUMMARY_COLUMNS).where(backup_jobs.c.id == job_id)).one()
                    t = time.perf_counter()
                    reference, _ = summarizer.summarize(row, conn, curves=False)
                    f["reference"].append(time.perf_counter() - t)
                rolled = scheduler.rollup.run_once().rolled_up
                c.log(f"{job_id}: rolled up ({rolled} job(s)); stored, {args.requests} requests")
                f["stored"] += sequential(lambda job_id=job_id: get(job_id, "rolled_up"), args.requests, warmup=5)
                _, stored = _timed_get(client, job_id, "rolled_up")
                equal[size].append(
                    stored["performance_metrics"] == computed["performance_metrics"]
                    and computed["performance_metrics"]["snapshots_recorded"] == size
                    and reference["snapshots_recorded"] == size
                )
        client.close()
        scheduler.close()
        influx.close()
        if not args.keep_data:
            c.cleanup_jobs(prefix)
        engine.dispose()

    rows = []
    for size in sizes:
        f = figures[size]
        live, cached, stored = (c.summary_ms(f[k]) for k in ("live", "cached", "stored"))
        first = [x * 1000 for x in f["first"]]
        reference = [x * 1000 for x in f["reference"]]
        rows.append(
            [
                f"{size:,}",
                live["p50"],
                live["p99"],
                statistics.median(first),
                max(first),
                statistics.median(reference),
                cached["p50"],
                cached["p99"],
                stored["p50"],
                stored["p99"],
                f"{sum(equal[size])}/{len(equal[size])}",
            ]
        )
    print(
        c.table(
            [
                "points",
                "live p50",
                "live p99",
                "first median",
                "first max",
                "in-process median",
                "cached p50",
                "cached p99",
                "stored p50",
                "stored p99",
                "computed = stored",
            ],
            rows,
            f"\nHistory of a finished job not rolled up yet (ms), server {args.server}; {args.repeats} jobs per size "
            f"(one first answer each), {args.requests} sequential requests per repeated measurement, "
            f"a point every {args.interval} s",
        )
    )
    ratio_rows = []
    for size in sizes:
        f = figures[size]
        first = statistics.median(f["first"])
        ratio_rows.append(
            [
                f"{size:,}",
                f"{first / statistics.median(f['live']):.2f}x",
                f"{first / statistics.median(f['reference']):.2f}x",
                f"{statistics.median(f['cached']) / statistics.median(f['stored']):.2f}x",
            ]
        )
    print(
        c.table(
            ["points", "first / live (p50)", "first / in-process", "cached / stored (p50)"],
            ratio_rows,
            "\nRatios (medians)",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
