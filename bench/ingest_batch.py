"""Benchmark 2: the batch endpoint, against raw batched line-protocol writes to the same InfluxDB.

What it measures
    `POST /api/v1/telemetry/batch` with 5,000 updates per request (`{"updates": [{"job_type": "backup",
    "job_id": ..., <update fields>}, ...]}`), the updates of each request spread round-robin over
    `--jobs-per-batch` (default 10) of `--jobs` running jobs, the next request the next ones (as agents
    send their own few jobs' updates; `--jobs-per-batch 1000` spreads every request over every job; the
    jobs are created with `POST /api/v1/backups` and primed with one update), sent by `--concurrency`
    concurrent httpx clients; bodies are encoded before the clock starts.
    Two figures for the API:
      * accepted updates/s: updates in 202 answers / time until the last answer;
      * end-to-end updates/s: the same updates / time until the API's point buffer is drained
        (readiness backlog 0), i.e. until they are all in InfluxDB. This is the sustainable rate.
    Reference in the same run: the same number of points, as pre-encoded line-protocol bodies of
    5,000 points each (the series keys and fields the API writes), POSTed by the same number of
    concurrent clients straight to InfluxDB's `/write?db=sendense&rp=raw_telemetry&precision=ns`.
    Prints both rates, per-request latency percentiles, CPU per process, and the ratio ours / raw.
    Afterwards it checks that InfluxDB holds every point of both (count per run prefix).

Targets (from the issue)
    >= 30,000 updates/s through the batch endpoint; aim for >= 40 % of the raw write rate.

Usage
    .venv/bin/python bench/ingest_batch.py [--requests 60] [--batch 5000] [--concurrency 4] [--jobs 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import _common as c
import httpx
import msgspec

from pipeline.tsdb.encoding import TELEMETRY, series_key, telemetry_line

PHASES = ("transferring", "transferring", "transferring", "verifying")


def schedule(jobs: int, requests: int, batch: int, per_batch: int) -> list[list[tuple[int, int, int]]]:
    """Per request, its updates as (job index, that job's step, running number n).

    Each request covers `per_batch` consecutive jobs (the next request the next ones, wrapping round),
    as an agent sends the updates of the few jobs it runs; `per_batch` = `jobs` spreads every request
    over all jobs (one commit then locks and writes every job's row).
    """
    per_batch = max(1, min(per_batch, jobs))
    steps = [0] * jobs
    out = []
    n = 0
    for r in range(requests):
        first = (r * per_batch) % jobs
        items = []
        for i in range(batch):
            job = (first + i % per_batch) % jobs
            steps[job] += 1
            items.append((job, steps[job], n))
            n += 1
        out.append(items)
    return out


def api_bodies(job_ids: list[str], plan: list[list[tuple[int, int, int]]]) -> list[bytes]:
    bodies = []
    for items in plan:
        updates = [
            {
                "job_type": "backup",
                "job_id": job_ids[job],
                "bytes_transferred": step * 1_048_576,
                "total_bytes": 10**12,
                "transfer_speed_bps": 50_000_000 + (n % 997) * 1000,
                "progress_percent": min(100.0, step / 100),
                "current_phase": PHASES[n % len(PHASES)],
                "worker_count": 4,
            }
            for job, step, n in items
        ]
        bodies.append(msgspec.json.encode({"updates": updates}))
    return bodies


def raw_bodies(job_ids: list[str], plan: list[list[tuple[int, int, int]]]) -> list[bytes]:
    keys = [
        series_key(TELEMETRY, {"job_id": j, "job_type": "backup", "vm_name": f"vm {j}", "repository_id": "bench-repo"})
        for j in job_ids
    ]
    base = time.time_ns() - 3600 * 10**9
    bodies = []
    for items in plan:
        lines = [
            telemetry_line(
                keys[job],
                bytes_transferred=step * 1_048_576,
                total_bytes=10**12,
                transfer_speed_bps=50_000_000 + (n % 997) * 1000,
                progress_percent=min(100.0, step / 100),
                current_phase=PHASES[n % len(PHASES)],
                worker_count=4,
                timestamp_ns=base + n * 1000,  # unique per series: nothing overwrites anything
            )
            for job, step, n in items
        ]
        bodies.append("\n".join(lines).encode())
    return bodies


async def send_all(
    url: str, bodies: list[bytes], concurrency: int, headers: dict[str, str], params: dict[str, str] | None
) -> tuple[float, list[float], list[httpx.Response]]:
    """Send every body once from `concurrency` clients; returns (elapsed s, latencies s, responses)."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    responses: list[httpx.Response] = []

    async def client_loop() -> None:
        async with httpx.AsyncClient(timeout=300.0, headers=headers) as client:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t = time.perf_counter()
                r = await client.post(url, content=body, params=params)
                latencies.append(time.perf_counter() - t)
                responses.append(r)

    start = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies, responses


async def with_probe(coro, probe_url: str, every: float = 0.1) -> tuple[object, list[float]]:
    """Run `coro` while timing `GET probe_url` every `every` s: how long other requests wait meanwhile."""
    done = asyncio.Event()
    probes: list[float] = []

    async def probe() -> None:
        async with httpx.AsyncClient(timeout=60.0) as client:
            while not done.is_set():
                t = time.perf_counter()
                await client.get(probe_url)
                probes.append(time.perf_counter() - t)
                await asyncio.sleep(every)

    task = asyncio.create_task(probe())
    try:
        return await coro, probes
    finally:
        done.set()
        await task


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=60, help="timed requests per side (default 60)")
    parser.add_argument("--batch", type=int, default=5000, help="updates (points) per request")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent clients per side")
    parser.add_argument("--jobs", type=int, default=1000, help="running jobs the updates are spread over")
    parser.add_argument(
        "--jobs-per-batch",
        type=int,
        default=10,
        help="jobs one request's updates are spread over (an agent sends its own few jobs' updates); "
        "= --jobs for every request over every job",
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests per side first")
    parser.add_argument(
        "--no-serial-ref",
        action="store_true",
        help="skip the second reference (raw writes from 1 client: what one sequential writer reaches)",
    )
    parser.add_argument("--server", choices=["granian", "uvicorn"], default="granian")
    parser.add_argument("--keep-data", action="store_true", help="keep this run's jobs and points")
    c.add_api_env_option(parser)
    args = parser.parse_args()
    api_env = c.api_env_from(args)
    prefix = c.run_id("batch")
    api_prefix, raw_prefix, ser_prefix = f"{prefix}-api", f"{prefix}-raw", f"{prefix}-ser"
    api_jobs = [f"{api_prefix}-{i:05d}" for i in range(args.jobs)]
    raw_jobs = [f"{raw_prefix}-{i:05d}" for i in range(args.jobs)]
    total = args.requests * args.batch

    c.log(f"encoding {args.warmup + args.requests} x {args.batch} updates per side")
    t = time.perf_counter()
    plan = schedule(args.jobs, args.warmup + args.requests, args.batch, args.jobs_per_batch)
    api_all = api_bodies(api_jobs, plan)
    raw_all = raw_bodies(raw_jobs, plan)
    ser_jobs = [j.replace("-raw-", "-ser-") for j in raw_jobs]
    ser_timed = [] if args.no_serial_ref else raw_bodies(ser_jobs, plan)[args.warmup :]
    c.log(
        f"encoded in {time.perf_counter() - t:.1f} s; API body {len(api_all[0]) / 1e6:.2f} MB, "
        f"line-protocol body {len(raw_all[0]) / 1e6:.2f} MB"
    )
    api_warm, api_timed = api_all[: args.warmup], api_all[args.warmup :]
    raw_warm, raw_timed = raw_all[: args.warmup], raw_all[args.warmup :]

    with c.bench_stack() as stack, c.api_process(stack, args.server, api_env) as api:
        api_url = stack.api_url
        c.log(f"creating and priming {len(api_jobs)} jobs ({api_prefix}-*)")
        asyncio.run(c.create_jobs(api_url, api_jobs))
        batch_url = f"{api_url}/api/v1/telemetry/batch"
        write_url = f"http://127.0.0.1:{c.INFLUX_PORT}/write"
        write_params = {"db": c.INFLUX_DB, "rp": c.RAW_RP, "precision": "ns"}
        headers = {**c.AGENT_HEADERS, "Content-Type": "application/json"}
        pids = {"api": api.pid, **c.server_pids()}

        # Warm-up (untimed): both paths, so connection pools, caches and shard creation are ready.
        asyncio.run(send_all(batch_url, api_warm, args.concurrency, headers, None))
        asyncio.run(send_all(write_url, raw_warm, args.concurrency, {}, write_params))

        # Reference first: raw line protocol straight into InfluxDB.
        cpu0 = {n: c.process_tree_cpu(p) for n, p in pids.items()}
        raw_s, raw_lat, raw_resp = asyncio.run(send_all(write_url, raw_timed, args.concurrency, {}, write_params))
        raw_cpu = {n: (c.process_tree_cpu(p) - cpu0[n]) / raw_s for n, p in pids.items()}
        raw_bad = [r for r in raw_resp if r.status_code != 204]
        if ser_timed:
            ser_s, ser_lat, ser_resp = asyncio.run(send_all(write_url, ser_timed, 1, {}, write_params))
            ser_bad = [r for r in ser_resp if r.status_code != 204]

        # Ours.
        written0 = c.points_written(api_url)
        cpu0 = {n: c.process_tree_cpu(p) for n, p in pids.items()}
        t0 = time.perf_counter()
        (api_s, api_lat, api_resp), probes = asyncio.run(
            with_probe(send_all(batch_url, api_timed, args.concurrency, headers, None), f"{api_url}/api/v1/health/live")
        )
        e2e_s = time.perf_counter() - t0
        api_cpu = {n: (c.process_tree_cpu(p) - cpu0[n]) / e2e_s for n, p in pids.items()}
        written = c.points_written(api_url) - written0
        accepted = sum(r.json().get("accepted", 0) for r in api_resp if r.status_code == 202)
        rejected = sum(len(r.json().get("rejected", [])) for r in api_resp if r.status_code == 202)
        api_bad = [r for r in api_resp if r.status_code != 202]

        api_points = c.influx_count(api_prefix)
        raw_points = c.influx_count(raw_prefix)
        ser_points = c.influx_count(ser_prefix) if ser_timed else 0
        api_rss = c.tree_rss_mb(api.pid)
        if not args.keep_data:
            c.cleanup_jobs(prefix)

    expected_api = args.jobs + (args.warmup + args.requests) * args.batch  # priming + warm-up + timed
    expected_raw = (args.warmup + args.requests) * args.batch
    raw_rate = total / raw_s
    acc_rate = accepted / api_s
    e2e_rate = accepted / e2e_s
    api_ms, raw_ms = c.summary_ms(api_lat), c.summary_ms(raw_lat)

    print(
        c.table(
            ["path", "points", "seconds", "points/s", "req p50 ms", "req p99 ms", "req max ms", "errors"],
            [
                [
                    "raw /write to InfluxDB (reference)",
                    total,
                    raw_s,
                    raw_rate,
                    raw_ms["p50"],
                    raw_ms["p99"],
                    raw_ms["max"],
                    len(raw_bad),
                ],
                [
                    "ours: POST /telemetry/batch, until 202s",
                    accepted,
                    api_s,
                    acc_rate,
                    api_ms["p50"],
                    api_ms["p99"],
                    api_ms["max"],
                    len(api_bad) + rejected,
                ],
                ["ours: end to end (until in InfluxDB)", written, e2e_s, e2e_rate, "", "", "", ""],
                *(
                    [
                        [
                            "raw /write from 1 client (one writer at a time)",
                            total,
                            ser_s,
                            total / ser_s,
                            c.summary_ms(ser_lat)["p50"],
                            c.summary_ms(ser_lat)["p99"],
                            c.summary_ms(ser_lat)["max"],
                            len(ser_bad),
                        ]
                    ]
                    if ser_timed
                    else []
                ),
            ],
            f"\nBatch ingest: {args.requests} requests x {args.batch} updates, {args.concurrency} concurrent clients, "
            f"{args.jobs} jobs ({args.jobs_per_batch} per request), server {args.server}",
        )
    )
    print(
        c.table(
            ["process", "cores (raw run)", "cores (our run)"],
            [[n, raw_cpu[n], api_cpu[n]] for n in pids],
            "\nCPU used (cores busy on average; 2 available)",
        )
    )
    print(
        c.table(
            ["check", "expected", "in InfluxDB", "verdict"],
            [
                [
                    "ours: priming + warm-up + timed updates",
                    expected_api,
                    api_points,
                    c.verdict(api_points == expected_api),
                ],
                ["raw: warm-up + timed points", expected_raw, raw_points, c.verdict(raw_points == expected_raw)],
                *(
                    [["raw, 1 client: timed points", total, ser_points, c.verdict(ser_points == total)]]
                    if ser_timed
                    else []
                ),
            ],
            "\nPoints arrived?",
        )
    )
    print(
        f"  API: accepted {accepted:,}, rejected {rejected:,}, non-202 answers {len(api_bad)}; "
        f"API memory (PSS) {api_rss:.0f} MB"
    )
    pr = c.summary_ms(probes)
    print(
        f"  GET /api/v1/health/live every 100 ms during our run ({len(probes)} probes): p50 {pr['p50']:.1f} ms, "
        f"p99 {pr['p99']:.1f} ms, max {pr['max']:.1f} ms (what any other request waits while batches are processed)"
    )
    r_e2e, r_acc = c.ratio(e2e_rate, raw_rate), c.ratio(acc_rate, raw_rate)
    print(
        c.table(
            ["target", "measured", "verdict"],
            [
                ["end-to-end updates/s >= 30,000", f"{e2e_rate:,.0f}", c.verdict(e2e_rate >= 30_000)],
                ["accepted updates/s >= 30,000", f"{acc_rate:,.0f}", c.verdict(acc_rate >= 30_000)],
                ["ours (end to end) / raw >= 40 %", f"{r_e2e:.1%}", c.verdict(r_e2e >= 0.4)],
                ["ours (accepted) / raw >= 40 %", f"{r_acc:.1%}", c.verdict(r_acc >= 0.4)],
                ["every point arrived", f"{api_points:,} / {expected_api:,}", c.verdict(api_points == expected_api)],
            ],
            "\nTargets",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
