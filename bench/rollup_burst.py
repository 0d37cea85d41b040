"""Benchmark: many jobs finishing at once, rolled up by two schedulers, pushed down and reading every point.

What it measures
    `--jobs` (1,000) finished backup jobs (rows completed at once, written directly to MySQL) with
    `--points` (1,440: two hours at one point every 5 s, so pushed down) job-level points each, written directly to
    InfluxDB with the API's tags and fields. Then `--schedulers` (2) processes, each the scheduler's
    own RollupJob (pipeline.scheduler.SchedulerJobs) calling `run_once()` until nothing is due, start
    together; the wall time from their start until every job is rolled up gives jobs/s.
    In the same run, the same number of twin jobs (same points) rolled up the same way with every point
    read into Python (`JobSummarizer(pushdown=False)`, the previous path).
    Checks afterwards that every job has its summary exactly once and no raw point is left.

Target (issue 14)
    1,000 jobs finishing at once rolled up at >= 20 jobs/s with two schedulers.

Usage
    .venv/bin/python bench/rollup_burst.py [--jobs 1000] [--points 1440] [--schedulers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _common as c
import httpx

WRITE_BATCH = 20_000


def child(every_point: bool) -> dict:
    from pipeline.scheduler import SchedulerJobs
    from pipeline.settings import load_settings

    jobs = SchedulerJobs(load_settings())
    jobs.rollup.summarizer.pushdown = not every_point
    rolled = failed = 0
    started = time.perf_counter()
    while True:
        run = jobs.rollup.run_once()
        rolled, failed = rolled + run.rolled_up, failed + run.failed
        if run.rolled_up + run.failed == 0:
            break
    seconds = time.perf_counter() - started
    jobs.close()
    return {"rolled_up": rolled, "failed": failed, "seconds": seconds}


def write_jobs(engine, prefix: str, count: int, points: int, end: datetime) -> None:
    from sqlalchemy import insert

    from pipeline.db.tables import backup_jobs
    from pipeline.tsdb.encoding import TELEMETRY, series_key, telemetry_line

    start = end - timedelta(seconds=5 * (points - 1))
    start_ns = int(start.replace(tzinfo=UTC).timestamp()) * 10**9
    client = httpx.Client(timeout=300.0)
    lines: list[str] = []
    rows = []
    for j in range(count):
        job_id, vm = f"{prefix}-{j}", f"burst-vm-{j % 200}"
        key = series_key(TELEMETRY, {"job_id": job_id, "job_type": "backup", "vm_name": vm, "repository_id": "r"})
        for i in range(points):
            phase = "snapshot" if i < 10 else "transferring" if i < points - 5 else "finalizing"
            lines.append(
                telemetry_line(
                    key,
                    bytes_transferred=i * 10**6,
                    total_bytes=points * 10**6,
                    transfer_speed_bps=0 if i % 97 == 0 else 10**8 + (i * 7919 + j) % 10**7,
                    progress_percent=round(100.0 * (i + 1) / points, 3),
                    current_phase=phase,
                    worker_count=2,
                    timestamp_ns=start_ns + i * 5 * 10**9,
                )
            )
            if len(lines) >= WRITE_BATCH:
                c.influx_write("\n".join(lines), client)
                lines = []
        rows.append(
            {
                "id": job_id,
                "vm_name": vm,
                "repository_id": "r",
                "backup_type": "incremental",
                "job_type": "backup",
                "status": "completed",
                "created_at": start - timedelta(seconds=5),
                "started_at": start,
                "completed_at": end,
                "bytes_transferred": points * 10**6,
                "total_bytes": points * 10**6,
                "transfer_speed_bps": 10**8,
                "progress_percent": 100,
                "current_phase": "completed",
                "last_telemetry_at": end,
            }
        )
    if lines:
        c.influx_write("\n".join(lines), client)
    client.close()
    with engine.begin() as conn:
        for at in range(0, len(rows), 500):
            conn.execute(insert(backup_jobs), rows[at : at + 500])


def burst(schedulers: int, every_point: bool) -> tuple[float, list[dict]]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *(["every"] if every_point else [])]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=c.PROJECT_DIR,
                         env=os.environ.copy())
        for _ in range(schedulers)
    ]  # fmt: skip
    outs = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"scheduler child failed ({proc.returncode}):\n{out}\n{err[-3000:]}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return time.perf_counter() - started, outs


def check(engine, prefix: str, count: int) -> tuple[int, int]:
    with engine.connect() as conn:
        done = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM backup_jobs WHERE id LIKE %s AND performance_metrics IS NOT NULL "
            "AND rolled_up_at IS NOT NULL",
            (f"{prefix}-%",),
        ).scalar_one()
    return done, c.influx_count(prefix, exact=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--points", type=int, default=1440)
    parser.add_argument("--schedulers", type=int, default=2)
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child("every" in args.child)))
        return 0
    print(c.machine_note())
    run = c.run_id("burst")
    rows, verdicts = [], []
    with c.bench_stack():
        engine = c.mysql_engine()
        # Leftovers of earlier runs would be claimed too and blur the figure.
        left = burst(1, False)[1][0]["rolled_up"]
        if left:
            c.log(f"rolled up {left} finished jobs left by earlier runs first")
        for name, every in (("pushed down (ours)", False), ("every point read (previous path)", True)):
            prefix = f"{run}-{'every' if every else 'push'}"
            end = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(minutes=5)
            t = time.perf_counter()
            write_jobs(engine, prefix, args.jobs, args.points, end)
            c.log(f"{name}: {args.jobs:,} jobs x {args.points} points written in {time.perf_counter() - t:.1f} s")
            wall, outs = burst(args.schedulers, every)
            done, left_points = check(engine, prefix, args.jobs)
            per = ", ".join(f"{o['rolled_up']} in {o['seconds']:.1f} s" for o in outs)
            c.log(f"{name}: {done} rolled up in {wall:.1f} s ({per}); {left_points} raw points left")
            rows.append([name, args.jobs, wall, args.jobs / wall, per, done, left_points])
            if not every:
                ok = done == args.jobs and left_points == 0 and sum(o["failed"] for o in outs) == 0
                verdicts.append(["every job rolled up once, no raw point left", f"{done}/{args.jobs}", c.verdict(ok)])
                verdicts.append(
                    [f">= 20 jobs/s with {args.schedulers} schedulers", f"{args.jobs / wall:.1f}/s",
                     c.verdict(args.jobs / wall >= 20)]
                )  # fmt: skip
        c.mysql_delete_jobs(run)
        engine.dispose()
    print(
        c.table(
            ["path", "jobs", "wall s", "jobs/s", "per scheduler", "rolled up", "raw points left"],
            rows,
            f"\n{args.jobs:,} jobs finishing at once ({args.points} points each), {args.schedulers} schedulers, "
            "side by side in one run",
        )
    )
    print(c.table(["target", "measured", "verdict"], verdicts, "\nTargets"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
