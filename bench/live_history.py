"""Benchmark: refreshes of a live job's chart with several viewers, as the job grows.

What it measures
    For each size in `--sizes` (1,000 / 17,280 / 100,000 job-level points, one every 5 s, written
    straight to InfluxDB with the API's tags and fields, the row marked running): `--viewers` (8)
    viewers refresh the job's history `--rounds` times. Each round the agent first posts one update
    through the API (so every round has a new point to read, the worst case for the cache), then all
    viewers ask at once with `?since=<their cursor>`, as the dashboard does; every request's latency
    is kept. The viewers' first request (the whole chart) is not counted.
    Reference in the same run, per size: what every refresh of every viewer cost before, the whole
    chart read from InfluxDB (the count/first/last statement, then every point or the `GROUP BY
    time()` buckets), sent straight to `/query`, sequentially, `--rounds` times.
    Prints per size: p50 / p99 / max of a refresh, the reference's, their ratio, and how the API
    read (whole reads, tail reads, answers shared): the curve of p99 against the job's length.
    Then the same for the per-disk curves (`--disks`, 4): a job of that many disks with the size's points
    on each, one disk reporting per round in turn, viewers asking `/disks?since=<their cursor>`; the
    reference is every disk's curve read whole from InfluxDB (as every refresh did before).

Target (issue 14)
    p99 of a refresh for a 17,280-point live job with 8 concurrent viewers < 20 ms, and flat as the
    job grows from 1,000 to 100,000 points.

Usage
    .venv/bin/python bench/live_history.py [--sizes 1000,17280,100000] [--viewers 8] [--rounds 100] [--disks 4]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from datetime import UTC, datetime, timedelta

import _common as c
import httpx
from history import write_points

from pipeline.read.live import AHEAD_NS, LIVE_CHART_POINTS
from pipeline.read.live_disks import LIVE_DISK_POINTS
from pipeline.tsdb import queries


async def viewers_refresh(api_url: str, job_id: str, viewers: int, rounds: int, disks: int = 0) -> list[float]:
    """Each round: one update posted (with `disks`, for one disk, in turn), then every viewer's `since`
    refresh at once (of the per-disk curves with `disks`); latencies (s)."""
    url = f"/api/v1/telemetry/history/{job_id}" + ("/disks" if disks else "")
    clients = [httpx.AsyncClient(base_url=api_url, headers=c.AGENT_HEADERS, timeout=60.0) for _ in range(viewers)]
    agent = httpx.AsyncClient(base_url=api_url, headers=c.AGENT_HEADERS, timeout=60.0)
    cursors: list[str] = []
    for client in clients:  # the whole chart first, as a dashboard does on selection
        body = (await client.get(url)).json()
        if body.get("data_source") != "live_snapshots" or (disks and len(body["disks"]) != disks):
            raise RuntimeError(f"{job_id}: {str(body)[:300]}")
        cursors.append(body["cursor"])
    latencies: list[float] = []

    async def refresh(i: int, disk: int | None) -> None:
        t = time.perf_counter()
        r = await clients[i].get(url, params={"since": cursors[i]})
        latencies.append(time.perf_counter() - t)
        body = r.json()
        if disk is None:
            new = body.get("chart_data")
        else:  # the disk that reported has its new point, the others none
            new = [len(d["chart_data"]) for d in body.get("disks", [])] == [int(d == disk) for d in range(disks)]
        if r.status_code != 200 or body.get("since") != cursors[i] or not new:
            raise RuntimeError(f"{job_id}: {r.status_code} {r.text[:300]}")
        cursors[i] = body["cursor"]

    for n in range(rounds):
        disk = n % disks if disks else None
        update = {
            "bytes_transferred": 10**9 + n,
            "total_bytes": 10**15,
            "transfer_speed_bps": 150_000_000,
            "progress_percent": 99.5,
            "current_phase": "transferring",
            "timestamp": datetime.now(UTC).isoformat(),
        }
        if disk is not None:
            update["disk_index"] = disk
        r = await agent.post(f"/api/v1/telemetry/backup/{job_id}", json=update)
        if r.status_code != 202:
            raise RuntimeError(f"update refused: {r.status_code} {r.text[:300]}")
        await asyncio.gather(*(refresh(i, disk) for i in range(viewers)))
    for client in [*clients, agent]:
        await client.aclose()
    return latencies


def timed_reads(rounds: int, read) -> list[float]:
    """`read(influx, src, end_ns)` `rounds` times against InfluxDB, straight (5 uncounted first); seconds each."""
    from pipeline.settings import load_settings
    from pipeline.tsdb import queries
    from pipeline.tsdb.influx import SyncInflux

    settings = load_settings()
    influx = SyncInflux(settings.influx)
    src = queries.source(settings.influx.database, settings.influx.raw_rp)
    out = []
    for _ in range(rounds + 5):
        t = time.perf_counter()
        read(influx, src, time.time_ns() + AHEAD_NS)
        out.append(time.perf_counter() - t)
    influx.close()
    return out[5:]


def whole_reads(job_id: str, start_ns: int, rounds: int) -> list[float]:
    """The previous refresh: the whole chart from InfluxDB (bounds, then points or buckets)."""

    def read(influx, src: str, end_ns: int) -> None:
        stats = influx.query(*queries.chart_bounds(src, job_id, start_ns, end_ns), epoch="ms")
        count = stats[0]["series"][0]["values"][0][1]
        first_ms, last_ms = stats[1]["series"][0]["values"][0][0], stats[2]["series"][0]["values"][0][0]
        if count <= LIVE_CHART_POINTS:
            influx.query(*queries.chart_points(src, job_id, start_ns, end_ns), epoch="ms")
        else:
            bucket_s = max(1, math.ceil((last_ms - first_ms) / 1000 / (LIVE_CHART_POINTS - 1)))
            influx.query(*queries.chart_buckets(src, job_id, start_ns, end_ns, first_ms, last_ms, bucket_s), epoch="ms")

    return timed_reads(rounds, read)


def whole_disk_reads(job_id: str, start_ns: int, rounds: int) -> list[float]:
    """The previous per-disk refresh: every disk's curve from InfluxDB, bucketed by the job's age."""

    def read(influx, src: str, end_ns: int) -> None:
        bucket = max(1, math.ceil((end_ns - start_ns) / 1e9 / LIVE_DISK_POINTS))
        influx.query(*queries.disk_curves(src, job_id, start_ns, end_ns, bucket), epoch="ms")

    return timed_reads(rounds, read)


def disk_job(api_url: str, engine, job_id: str, size: int, disks: int) -> int:
    """A running job of `disks` disks, each with `size` points (one every 5 s) written straight to
    InfluxDB and its row marked; returns the job's start (epoch ns)."""
    body = {"vm_name": f"vm {job_id}", "backup_type": "full", "repository_id": "bench-repo", "backup_id": job_id}
    body["disks"] = [{"disk_index": d, "size_bytes": 10**12} for d in range(disks)]
    with httpx.Client(base_url=api_url, headers=c.AGENT_HEADERS, timeout=30.0) as client:
        r = client.post("/api/v1/backups", json=body)
        if r.status_code != 201:
            raise RuntimeError(f"creating {job_id}: {r.status_code} {r.text[:200]}")
    end = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(seconds=60)
    for disk in range(disks):
        first_ms, _ = write_points(job_id, f"vm {job_id}", size, 5, end, disk_index=disk)
    started = datetime.fromtimestamp(first_ms / 1000, UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE backup_jobs SET status = 'running', started_at = %s, last_telemetry_at = %s WHERE id = %s",
            (started, end, job_id),
        )
        conn.exec_driver_sql("UPDATE backup_disks SET last_telemetry_at = %s WHERE job_id = %s", (end, job_id))
    return first_ms * 10**6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,17280,100000", help="points of each job, comma-separated")
    parser.add_argument("--viewers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--disks", type=int, default=4, help="disks of the per-disk runs (0: none)")
    parser.add_argument("--server", choices=["granian", "uvicorn"], default="granian")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(c.machine_note())
    prefix = c.run_id("live")
    rows, disk_rows = [], []
    p99s, disk_p99s = {}, {}
    with c.bench_stack() as stack, c.api_process(stack, args.server):
        engine = c.mysql_engine()
        for size in sizes:
            job_id = f"{prefix}-{size}"
            asyncio.run(c.create_jobs(stack.api_url, [job_id], prime=False))
            end = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(seconds=60)
            first_ms, last_ms = write_points(job_id, "bench VM (live)", size, 5, end)
            started = datetime.fromtimestamp(first_ms / 1000, UTC).replace(tzinfo=None)
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "UPDATE backup_jobs SET status = 'running', started_at = %s, last_telemetry_at = %s, "
                    "bytes_transferred = 1, total_bytes = %s, transfer_speed_bps = 1, progress_percent = 99, "
                    "current_phase = 'transferring' WHERE id = %s",
                    (started, end, 10**15, job_id),
                )
            c.log(f"{size:,} points: {args.viewers} viewers x {args.rounds} refreshes")
            ours = c.summary_ms(asyncio.run(viewers_refresh(stack.api_url, job_id, args.viewers, args.rounds)))
            c.log(f"{size:,} points: the whole chart read {args.rounds} times (the previous refresh)")
            ref = c.summary_ms(whole_reads(job_id, first_ms * 10**6, args.rounds))
            p99s[size] = ours["p99"]
            rows.append(
                [
                    f"{size:,}",
                    ours["p50"],
                    ours["p99"],
                    ours["max"],
                    ref["p50"],
                    ref["p99"],
                    c.ratio(ours["p99"], ref["p99"]),
                ]
            )
            if args.disks:
                disk_id = f"{prefix}-{size}-disks"
                c.log(f"{args.disks} disks x {size:,} points: {args.viewers} viewers x {args.rounds} refreshes")
                start_ns = disk_job(stack.api_url, engine, disk_id, size, args.disks)
                ours = c.summary_ms(
                    asyncio.run(viewers_refresh(stack.api_url, disk_id, args.viewers, args.rounds, args.disks))
                )
                c.log(f"{args.disks} disks x {size:,} points: the whole curves read {args.rounds} times")
                ref = c.summary_ms(whole_disk_reads(disk_id, start_ns, args.rounds))
                disk_p99s[size] = ours["p99"]
                disk_rows.append(
                    [f"{size:,}", ours["p50"], ours["p99"], ours["max"], ref["p50"], ref["p99"],
                     c.ratio(ours["p99"], ref["p99"])]
                )  # fmt: skip
        c.mysql_delete_jobs(prefix)
        engine.dispose()
    print(
        c.table(
            ["points", "refresh p50 ms", "refresh p99 ms", "max ms", "whole read p50 ms", "whole read p99 ms",
             "p99 ours / whole"],
            rows,
            f"\nA live job's refresh with {args.viewers} viewers at once, each round after a new update "
            "(ours: GET ?since=cursor through the API; the previous refresh: the whole chart from InfluxDB, "
            "its queries alone)",
        )
    )  # fmt: skip
    if disk_rows:
        print(
            c.table(
                ["points a disk", "refresh p50 ms", "refresh p99 ms", "max ms", "whole read p50 ms",
                 "whole read p99 ms", "p99 ours / whole"],
                disk_rows,
                f"\nA live {args.disks}-disk job's per-disk curves, {args.viewers} viewers at once, each round after "
                "a new update of one disk in turn (ours: GET /disks?since=cursor through the API; the previous "
                "refresh: every disk's curve from InfluxDB, its query alone)",
            )
        )  # fmt: skip
    target = p99s.get(17_280)
    flat = max(p99s.values()) / min(p99s.values()) if p99s else float("nan")
    verdicts = []
    if target is not None:
        verdicts.append(["p99 < 20 ms at 17,280 points, 8 viewers", f"{target:.1f} ms", c.verdict(target < 20)])
    verdicts.append(["flat: largest p99 / smallest p99 over the sizes", f"{flat:.2f}x", c.verdict(flat < 2.0)])
    if disk_p99s:
        disk_flat = max(disk_p99s.values()) / min(disk_p99s.values())
        if 17_280 in disk_p99s:
            got = disk_p99s[17_280]
            verdicts.append(["per-disk p99 < 20 ms at 17,280 points a disk", f"{got:.1f} ms", c.verdict(got < 20)])
        verdicts.append(["per-disk flat: largest p99 / smallest", f"{disk_flat:.2f}x", c.verdict(disk_flat < 2.0)])
    print(c.table(["target", "measured", "verdict"], verdicts, "\nTargets"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
