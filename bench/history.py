"""Benchmark 4: `GET /api/v1/telemetry/history/{job_id}` for a rolled-up and for a running job.

What it measures
    Two jobs, created through `POST /api/v1/backups`, each with `--points` (17,280) job-level points
    written directly to InfluxDB, one every 5 s over the last 24 h (the API's tags and fields):
      (a) rolled_up: its row marked completed, then rolled up by the scheduler's RollupJob, so the
          history is served from `backup_jobs.performance_metrics`;
      (b) live_snapshots: its row marked running (current-state columns set), so the history is served
          from InfluxDB: count/first/last, then a `GROUP BY time()` aggregate into <= 600 buckets.
    For each: `--requests` sequential requests over one keep-alive connection (after a warm-up),
    then the same number spread over `--concurrency` concurrent clients; p50 / p90 / p99 / max.
    References in the same run, sequential, same count:
      * MySQL: a bare primary-key `SELECT` of the rolled-up job's row (with performance_metrics),
        through PyMySQL without SQLAlchemy; the floor for (a);
      * InfluxDB: the exact queries the endpoint sends for (b), straight to `/query` with httpx:
        the count/first/last statement, and the `GROUP BY time()` aggregate; their sum is the floor for (b).
    Prints each figure and the ratios ours / reference.

Targets (from the issue)
    rolled_up p99 < 10 ms; live_snapshots p99 < 100 ms.

Usage
    .venv/bin/python bench/history.py [--requests 2000] [--concurrency 8] [--server granian|uvicorn]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from datetime import UTC, datetime, timedelta

import _common as c
import httpx

from pipeline.read.history import LIVE_CHART_POINTS


def write_points(
    job_id: str, vm_name: str, points: int, interval_s: int, end: datetime, disk_index: int | None = None
) -> tuple[int, int]:
    """Write the job's points (one disk's with `disk_index`) ending at `end`; returns (first_ms, last_ms)."""
    from pipeline.tsdb.encoding import TELEMETRY, series_key, telemetry_line

    tags = {"job_id": job_id, "job_type": "backup", "vm_name": vm_name, "repository_id": "bench-repo"}
    if disk_index is not None:
        tags["disk_index"] = str(disk_index)
    key = series_key(TELEMETRY, tags)
    end_ns = int(end.replace(tzinfo=UTC).timestamp()) * 10**9
    start_ns = end_ns - (points - 1) * interval_s * 10**9
    client = httpx.Client(timeout=300.0)
    lines, sent = [], 0
    for i in range(points):
        speed = int(150e6 * (1 + 0.3 * math.sin(i / 300))) if i % 500 else 0
        sent += speed * interval_s
        lines.append(
            telemetry_line(
                key,
                bytes_transferred=sent,
                total_bytes=10**15,
                transfer_speed_bps=speed,
                progress_percent=round(100.0 * (i + 1) / points, 3),
                current_phase="transferring",
                worker_count=4,
                timestamp_ns=start_ns + i * interval_s * 10**9,
            )
        )
        if len(lines) == 5000:
            c.influx_write("\n".join(lines), client)
            lines = []
    if lines:
        c.influx_write("\n".join(lines), client)
    client.close()
    return start_ns // 10**6, end_ns // 10**6


def sequential(fn, n: int, warmup: int = 50) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


async def concurrent_get(url: str, n: int, concurrency: int, expect: str) -> tuple[list[float], float]:
    latencies: list[float] = []
    remaining = [n]

    async def worker() -> None:
        async with httpx.AsyncClient(headers=c.AGENT_HEADERS, timeout=60.0) as client:
            for _ in range(5):  # warm-up: this client's connection
                await client.get(url)
            while remaining[0] > 0:
                remaining[0] -= 1
                t = time.perf_counter()
                r = await client.get(url)
                latencies.append(time.perf_counter() - t)
                if r.status_code != 200 or r.json()["data_source"] != expect:
                    raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement (default 2000)")
    parser.add_argument("--concurrency", type=int, default=8, help="clients of the concurrent variant")
    parser.add_argument("--points", type=int, default=17_280, help="points per job (24 h at 5 s)")
    parser.add_argument("--server", choices=["granian", "uvicorn"], default="granian")
    parser.add_argument("--keep-data", action="store_true", help="keep this run's jobs and points")
    c.add_api_env_option(parser)
    args = parser.parse_args()
    api_env = c.api_env_from(args)
    prefix = c.run_id("history")
    rolled_id, live_id = f"{prefix}-rolled", f"{prefix}-live"
    vm_name = "bench VM (history)"
    results: dict[str, dict] = {}
    with c.bench_stack() as stack, c.api_process(stack, args.server, api_env):
        api_url = stack.api_url
        asyncio.run(c.create_jobs(api_url, [rolled_id, live_id], prime=False))
        engine = c.mysql_engine()
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        for job_id in (rolled_id, live_id):
            with engine.begin() as conn:
                conn.exec_driver_sql("UPDATE backup_jobs SET vm_name = %s WHERE id = %s", (vm_name, job_id))
        # (a): 24 h of points that ended an hour ago, marked completed, then rolled up.
        write_points(rolled_id, vm_name, args.points, 5, now - timedelta(hours=1))
        # (b): 24 h of points up to now, marked running with its current state.
        first_ms, last_ms = write_points(live_id, vm_name, args.points, 5, now)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE backup_jobs SET status = 'completed', started_at = %s, completed_at = %s, "
                "progress_percent = 100, current_phase = 'completed' WHERE id = %s",
                (now - timedelta(hours=25), now - timedelta(hours=1), rolled_id),
            )
            conn.exec_driver_sql(
                "UPDATE backup_jobs SET status = 'running', started_at = %s, last_telemetry_at = %s, "
                "bytes_transferred = 123456789, total_bytes = %s, transfer_speed_bps = 150000000, "
                "progress_percent = 99.5, current_phase = 'transferring' WHERE id = %s",
                (now - timedelta(hours=24), now, 10**15, live_id),
            )
        from pipeline.scheduler import SchedulerJobs
        from pipeline.settings import load_settings

        jobs = SchedulerJobs(load_settings())
        rolled = jobs.rollup.run_once().rolled_up
        jobs.close()
        c.log(f"rolled up {rolled} job(s) (ours and any left by earlier runs)")

        client = httpx.Client(base_url=api_url, headers=c.AGENT_HEADERS, timeout=60.0)
        sizes = {}
        for name, job_id, expect in (
            ("rolled_up", rolled_id, "rolled_up"),
            ("live_snapshots", live_id, "live_snapshots"),
        ):
            r = client.get(f"/api/v1/telemetry/history/{job_id}")
            body = r.json()
            if r.status_code != 200 or body.get("data_source") != expect:
                raise RuntimeError(f"{job_id}: expected {expect}, got {r.status_code} {r.text[:300]}")
            sizes[name] = (len(r.content), len(body.get("chart_data") or body["performance_metrics"]["chart_data"]))

            def get(job_id=job_id):
                resp = client.get(f"/api/v1/telemetry/history/{job_id}")
                if resp.status_code != 200:
                    raise RuntimeError(resp.text[:300])

            c.log(f"{name}: {args.requests} sequential requests")
            results[f"ours {name} (sequential)"] = {"lat": sequential(get, args.requests)}
            c.log(f"{name}: {args.requests} requests from {args.concurrency} concurrent clients")
            lat, wall = asyncio.run(
                concurrent_get(f"{api_url}/api/v1/telemetry/history/{job_id}", args.requests, args.concurrency, expect)
            )
            results[f"ours {name} ({args.concurrency} concurrent)"] = {"lat": lat, "rps": len(lat) / wall}
        client.close()

        # Reference for (a): bare primary-key SELECT through PyMySQL.
        import pymysql

        conn = pymysql.connect(
            host="127.0.0.1", port=c.MYSQL_PORT, user="oma_user", password="oma_password", database="migratekit_oma"
        )
        cur = conn.cursor()

        def pk_select() -> None:
            cur.execute(
                "SELECT id, status, performance_metrics, bytes_transferred, total_bytes, transfer_speed_bps, "
                "progress_percent, current_phase, last_telemetry_at FROM backup_jobs WHERE id = %s",
                (rolled_id,),
            )
            cur.fetchone()

        c.log("reference: MySQL primary-key SELECT")
        results["ref MySQL PK SELECT (sequential)"] = {"lat": sequential(pk_select, args.requests)}
        conn.close()

        # Reference for (b): the endpoint's own InfluxQL, straight to InfluxDB.
        source = f'"{c.INFLUX_DB}"."{c.RAW_RP}"."job_telemetry"'
        where = "WHERE job_id = $job_id AND disk_index = ''"
        stats_q = (
            f"SELECT count(transfer_speed_bps) FROM {source} {where}; "
            f"SELECT first(transfer_speed_bps) FROM {source} {where}; "
            f"SELECT last(transfer_speed_bps) FROM {source} {where}"
        )
        bucket_s = max(1, math.ceil((last_ms - first_ms) / 1000 / LIVE_CHART_POINTS))
        group_q = (
            f"SELECT mean(transfer_speed_bps), last(progress_percent), last(current_phase) FROM {source} "
            f"{where} AND time >= {first_ms}ms AND time <= {last_ms}ms GROUP BY time({bucket_s}s) fill(none)"
        )
        influx = httpx.Client(base_url=f"http://127.0.0.1:{c.INFLUX_PORT}", timeout=60.0)
        bind = json.dumps({"job_id": live_id})

        def query(q: str):
            def run() -> None:
                r = influx.get("/query", params={"db": c.INFLUX_DB, "q": q, "params": bind, "epoch": "ms"})
                r.raise_for_status()
                r.json()

            return run

        buckets = len(
            influx.get("/query", params={"db": c.INFLUX_DB, "q": group_q, "params": bind, "epoch": "ms"}).json()[
                "results"
            ][0]["series"][0]["values"]
        )
        c.log("reference: InfluxDB count/first/last and GROUP BY time()")
        results["ref InfluxDB count/first/last"] = {"lat": sequential(query(stats_q), args.requests)}
        results[f"ref InfluxDB GROUP BY time({bucket_s}s)"] = {"lat": sequential(query(group_q), args.requests)}
        influx.close()
        if not args.keep_data:
            c.cleanup_jobs(prefix)
        engine.dispose()

    rows = []
    for name, r in results.items():
        s = c.summary_ms(r["lat"])
        rows.append([name, len(r["lat"]), s["p50"], s["p90"], s["p99"], s["max"], r.get("rps", 1000 / s["mean"])])
    print(
        c.table(
            ["measurement", "requests", "p50 ms", "p90 ms", "p99 ms", "max ms", "req/s"],
            rows,
            f"\nHistory endpoint, server {args.server}; {args.points:,} points per job "
            f"(live chart: {buckets} buckets of {bucket_s} s)",
        )
    )
    print(
        f"  response sizes: rolled_up {sizes['rolled_up'][0]:,} B ({sizes['rolled_up'][1]} chart points), "
        f"live_snapshots {sizes['live_snapshots'][0]:,} B ({sizes['live_snapshots'][1]} chart points)"
    )

    def p(name: str, pct: int) -> float:
        return c.percentile([x * 1000 for x in results[name]["lat"]], pct)

    ru_seq, lv_seq = "ours rolled_up (sequential)", "ours live_snapshots (sequential)"
    ru_con = f"ours rolled_up ({args.concurrency} concurrent)"
    lv_con = f"ours live_snapshots ({args.concurrency} concurrent)"
    pk = "ref MySQL PK SELECT (sequential)"
    gb = f"ref InfluxDB GROUP BY time({bucket_s}s)"
    st = "ref InfluxDB count/first/last"
    floor50, floor99 = p(st, 50) + p(gb, 50), p(st, 99) + p(gb, 99)
    print(
        c.table(
            ["ratio", "p50", "p99"],
            [
                [
                    "rolled_up / MySQL PK SELECT",
                    f"{p(ru_seq, 50) / p(pk, 50):.1f}x",
                    f"{p(ru_seq, 99) / p(pk, 99):.1f}x",
                ],
                [
                    "live_snapshots / (InfluxDB count/first/last + GROUP BY)",
                    f"{p(lv_seq, 50) / floor50:.2f}x",
                    f"{p(lv_seq, 99) / floor99:.2f}x",
                ],
                [
                    "live_snapshots / InfluxDB GROUP BY alone",
                    f"{p(lv_seq, 50) / p(gb, 50):.2f}x",
                    f"{p(lv_seq, 99) / p(gb, 99):.2f}x",
                ],
            ],
            "\nRatios (sequential)",
        )
    )
    print(
        c.table(
            ["target", "measured", "verdict"],
            [
                ["rolled_up p99 < 10 ms (sequential)", f"{p(ru_seq, 99):.2f} ms", c.verdict(p(ru_seq, 99) < 10)],
                [
                    f"rolled_up p99 < 10 ms ({args.concurrency} concurrent)",
                    f"{p(ru_con, 99):.2f} ms",
                    c.verdict(p(ru_con, 99) < 10),
                ],
                ["live_snapshots p99 < 100 ms (sequential)", f"{p(lv_seq, 99):.2f} ms", c.verdict(p(lv_seq, 99) < 100)],
                [
                    f"live_snapshots p99 < 100 ms ({args.concurrency} concurrent)",
                    f"{p(lv_con, 99):.2f} ms",
                    c.verdict(p(lv_con, 99) < 100),
                ],
                [
                    f"(live chart_data <= LIVE_CHART_POINTS = {LIVE_CHART_POINTS})",
                    f"{sizes['live_snapshots'][1]} points",
                    c.verdict(sizes["live_snapshots"][1] <= LIVE_CHART_POINTS),
                ],
            ],
            "\nTargets",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
