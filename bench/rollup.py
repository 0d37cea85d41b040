"""Benchmark 3: rolling up one finished job with 100,000 job-level points.

What it measures
    For each repeat, a finished job (`backup_jobs` row with status completed, written directly to
    MySQL) with `--points` job-level points written directly to InfluxDB as line protocol with the
    tags and fields the API writes (measurement job_telemetry; tags job_id, job_type, vm_name,
    repository_id; fields bytes_transferred, total_bytes, transfer_speed_bps, progress_percent,
    current_phase, worker_count; encoded by pipeline.tsdb.encoding), one point per second.
    Then, each in a fresh child process (so that imports, warm-up and earlier runs do not blur the
    memory figures), after a warm-up of the connections:
      * ours: `RollupJob.roll_up_next()` built as the scheduler builds it (pipeline.scheduler.SchedulerJobs):
        claim, ask InfluxDB for the aggregates (pushed down), compute the metrics, commit, purge. Wall
        time, a breakdown (reader / metrics / purge / rest), and memory growth: peak RSS (VmHWM, reset
        before the call through /proc/self/clear_refs) minus RSS before, and the ru_maxrss delta;
      * the previous path on a twin job (same points): the same call with every point read into Python
        (`JobSummarizer(pushdown=False)`), the reference the pushed-down figures are tested against;
      * InfluxDB's own time for the aggregate statements the pushed-down path sends (its floor);
      * reference: a plain `SELECT * FROM job_telemetry WHERE job_id = '...'` of the same points (one
        non-chunked HTTP answer, then json.loads), with the same memory figures;
      * one more job rolled up with tracemalloc on (its peak of traced Python + numpy allocations; slower,
        so its time is not the figure).
    Prints rollup seconds, reference seconds, the ratio, memory growth, and the size of the stored
    `performance_metrics` (`len(json.dumps(...))`, as stored by SQLAlchemy, and compact).

Targets (from the issues)
    rollup < 1 s, memory growth < 100 MB, performance_metrics < 8 KB; pushed down: < 0.25 s and
    memory growth < 10 MB for 100,000 points.

Usage
    .venv/bin/python bench/rollup.py [--points 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _common as c
import httpx

WRITE_BATCH = 5000


# --- child process: one measurement ---------------------------------------------------------------


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _measure(fn, use_tracemalloc: bool) -> dict:
    gc.collect()
    if use_tracemalloc:
        tracemalloc.start()
        tracemalloc.reset_peak()
    rss0, maxrss0 = _rss_kb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hwm_reset = _reset_hwm()
    t = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - t
    out = {
        "seconds": seconds,
        "value": value,
        "rss_before_mb": rss0 / 1024,
        "peak_growth_mb": (_hwm_kb() - rss0) / 1024 if hwm_reset else float("nan"),
        "maxrss_delta_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss0) / 1024,
        "rss_after_mb": _rss_kb() / 1024,
    }
    if use_tracemalloc:
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    return out


def child_rollup(expect: str, use_tracemalloc: bool, every_point: bool = False) -> dict:
    import pipeline.rollup.summary as summary_module
    from pipeline.scheduler import SchedulerJobs
    from pipeline.settings import load_settings

    jobs = SchedulerJobs(load_settings())
    jobs.rollup.summarizer.pushdown = not every_point
    # Warm-up: open a pooled MySQL connection and the HTTP connection to InfluxDB.
    with jobs.engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    jobs.influx.ping()

    phases: dict[str, float] = {
        "reader.aggregates": 0.0,
        "reader.samples": 0.0,
        "reader.disks": 0.0,
        "rollup_metrics": 0.0,
        "purge": 0.0,
    }

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] += time.perf_counter() - t

        return wrapper

    reader, purger = jobs.rollup.reader, jobs.rollup.purger
    reader.samples = timed("reader.samples", reader.samples)
    reader.aggregates = timed("reader.aggregates", reader.aggregates)
    reader.disks = timed("reader.disks", reader.disks)
    purger.purge = timed("purge", purger.purge)
    summary_module.rollup_metrics = timed("rollup_metrics", summary_module.rollup_metrics)

    result = _measure(jobs.rollup.roll_up_next, use_tracemalloc)
    jobs.close()
    if result["value"] is not True or not _rolled_up(expect):
        raise SystemExit(f"roll_up_next() answered {result['value']!r}; {expect!r} is not rolled up")
    result["phases"] = phases
    return result


def child_reference(job_id: str) -> dict:
    url = f"http://127.0.0.1:{c.INFLUX_PORT}/query"
    client = httpx.Client(timeout=300.0)
    client.get(f"http://127.0.0.1:{c.INFLUX_PORT}/ping")  # warm-up: the connection
    q = f'SELECT * FROM "{c.RAW_RP}"."job_telemetry" WHERE job_id = \'{job_id}\''

    def fetch() -> int:
        body = json.loads(client.get(url, params={"db": c.INFLUX_DB, "q": q, "epoch": "ms"}).content)
        return len(body["results"][0]["series"][0]["values"])

    return _measure(fetch, False)


def child_aggregates(job_id: str) -> dict:
    """The pushed-down path's InfluxDB statements alone (aggregates, buckets), answers not used."""
    from pipeline.settings import load_settings
    from pipeline.tsdb import queries
    from pipeline.tsdb.influx import SyncInflux

    settings = load_settings()
    influx = SyncInflux(settings.influx)
    influx.ping()
    src = queries.source(settings.influx.database, settings.influx.raw_rp)
    first = influx.query(*queries.job_aggregates(src, job_id, 0, time.time_ns()), epoch="ms")[1]
    last = influx.query(*queries.job_aggregates(src, job_id, 0, time.time_ns()), epoch="ms")[2]
    start_ns = first["series"][0]["values"][0][0] * 10**6
    end_ns = last["series"][0]["values"][0][0] * 10**6 + 999_999
    width = (end_ns - start_ns) // 10**6 // 100 + 1

    def fetch() -> int:
        # One after the other: InfluxDB's time for the statements, not what sending them at once saves.
        influx.query(*queries.job_aggregates(src, job_id, start_ns, end_ns), epoch="ms")
        answers = influx.query(*queries.job_buckets(src, job_id, start_ns, end_ns, width), epoch="ms")
        return len(answers[0]["series"][0]["values"])

    return _measure(fetch, False)


def child_floor(job_id: str) -> dict:
    """The reader's exact chunked query, bytes read but not parsed: what InfluxDB alone costs."""
    url = f"http://127.0.0.1:{c.INFLUX_PORT}/query"
    client = httpx.Client(timeout=300.0)
    client.get(f"http://127.0.0.1:{c.INFLUX_PORT}/ping")
    q = (
        "SELECT transfer_speed_bps, progress_percent, current_phase, bytes_transferred, total_bytes, worker_count "
        f'FROM "{c.INFLUX_DB}"."{c.RAW_RP}"."job_telemetry" WHERE job_id = $job_id AND disk_index = \'\''
    )
    params = {
        "db": c.INFLUX_DB,
        "q": q,
        "params": json.dumps({"job_id": job_id}),
        "epoch": "ms",
        "chunked": "true",
        "chunk_size": "20000",
    }

    def fetch() -> int:
        size = 0
        with client.stream("GET", url, params=params) as r:
            for chunk in r.iter_bytes():
                size += len(chunk)
        return size

    return _measure(fetch, False)


# --- parent: data, orchestration, report ------------------------------------------------------------


def speed_at(i: int, n: int) -> int:
    """A plausible speed curve (bytes/s): ramp-up, slow waves, noise, occasional stalls."""
    if i < n * 0.01:
        return int(5e6 * (i + 1))
    if i % 997 == 0:
        return 0
    wave = 1 + 0.3 * math.sin(i / 900) + 0.1 * math.sin(i / 37)
    noise = ((i * 2654435761) % 1000) / 1000 - 0.5
    return max(1, int(200e6 * wave + 20e6 * noise))


def phase_at(i: int, n: int) -> str:
    if i == n - 1:
        return "completed"  # the terminal update's phase is the final status
    if i < n * 0.01:
        return "snapshot"
    return "transferring" if i < n * 0.95 else "verifying"


def write_job(engine, job_id: str, points: int, end: datetime) -> None:
    from sqlalchemy import insert

    from pipeline.db.tables import backup_jobs
    from pipeline.tsdb.encoding import TELEMETRY, series_key, telemetry_line

    vm_name = 'bench VM, "rollup" é'  # a real-looking name: space, comma, quotes, non-ASCII
    start = end - timedelta(seconds=points - 1)
    total = 50 * 10**12
    key = series_key(
        TELEMETRY, {"job_id": job_id, "job_type": "backup", "vm_name": vm_name, "repository_id": "bench-repo"}
    )
    start_ns = int(start.replace(tzinfo=UTC).timestamp()) * 10**9
    sent = 0
    client = httpx.Client(timeout=300.0)
    lines = []
    for i in range(points):
        speed = speed_at(i, points)
        sent += speed
        lines.append(
            telemetry_line(
                key,
                bytes_transferred=sent,
                total_bytes=total,
                transfer_speed_bps=speed,
                progress_percent=round(100.0 * (i + 1) / points, 4),
                current_phase=phase_at(i, points),
                worker_count=4,
                timestamp_ns=start_ns + i * 10**9,
            )
        )
        if len(lines) == WRITE_BATCH:
            c.influx_write("\n".join(lines), client)
            lines = []
    if lines:
        c.influx_write("\n".join(lines), client)
    client.close()
    with engine.begin() as conn:
        conn.execute(
            insert(backup_jobs).values(
                id=job_id,
                vm_name=vm_name,
                repository_id="bench-repo",
                backup_type="full",
                job_type="backup",
                status="completed",
                created_at=start - timedelta(seconds=5),
                started_at=start,
                completed_at=end,
                bytes_transferred=sent,
                total_bytes=total,
                transfer_speed_bps=speed,
                progress_percent=100,
                current_phase="completed",
                last_telemetry_at=end,
            )
        )


def run_child(*args: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=c.PROJECT_DIR, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def drain_leftovers() -> int:
    """Roll up finished jobs that earlier runs left behind, so that roll_up_next() claims ours."""
    from pipeline.scheduler import SchedulerJobs
    from pipeline.settings import load_settings

    jobs = SchedulerJobs(load_settings())
    try:
        return jobs.rollup.run_once().rolled_up
    finally:
        jobs.close()


def _rolled_up(job_id: str) -> bool:
    with c.mysql_engine().connect() as conn:
        at = conn.exec_driver_sql("SELECT rolled_up_at FROM backup_jobs WHERE id = %s", (job_id,)).scalar()
    return at is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000, help="job-level points of each job")
    parser.add_argument("--repeats", type=int, default=3, help="timed rollups (each its own job)")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the extra tracemalloc run")
    parser.add_argument("--keep-data", action="store_true", help="keep this run's MySQL rows")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, job_id, *flags = args.child
        if kind == "rollup":
            out = child_rollup(job_id, "tracemalloc" in flags, "every" in flags)
        elif kind == "aggregates":
            out = child_aggregates(job_id)
        else:
            out = child_reference(job_id) if kind == "reference" else child_floor(job_id)
        print(json.dumps(out))
        return 0

    print(c.machine_note())
    prefix = c.run_id("rollup")
    extra = 0 if args.no_tracemalloc else 1
    # Each timed job has a twin with the same points, rolled up the previous way (every point read).
    job_ids = [j for i in range(args.repeats) for j in (f"{prefix}-{i}", f"{prefix}-{i}-every")]
    job_ids += [f"{prefix}-trace-{i}" for i in range(extra)]
    runs, refs, floors, aggs, everys = [], [], [], [], []
    with c.bench_stack():
        left = drain_leftovers()
        if left:
            c.log(f"rolled up {left} finished jobs left by earlier runs first")
        engine = c.mysql_engine()
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        for n, job_id in enumerate(job_ids):
            # Older jobs first: roll_up_next() claims the job completed earliest.
            end = now - timedelta(minutes=10 * (len(job_ids) - n))
            t = time.perf_counter()
            write_job(engine, job_id, args.points, end)
            c.log(f"{job_id}: {args.points:,} points written in {time.perf_counter() - t:.1f} s")
            got = c.influx_count(job_id, exact=True)
            if got != args.points:
                raise RuntimeError(f"{job_id}: InfluxDB holds {got} points, expected {args.points}")
            tracing, every = "-trace-" in job_id, job_id.endswith("-every")
            if not tracing and not every:
                refs.append(run_child("reference", job_id))
                floors.append(run_child("floor", job_id))
                aggs.append(run_child("aggregates", job_id))
            flags = ["tracemalloc"] if tracing else ["every"] if every else []
            run = run_child("rollup", job_id, *flags)
            how = " (tracemalloc on)" if tracing else " (every point read)" if every else ""
            c.log(f"{job_id}: rolled up in {run['seconds']:.3f} s{how}")
            left_points = c.influx_count(job_id, exact=True)
            with engine.connect() as conn:
                pm = conn.exec_driver_sql(
                    "SELECT performance_metrics FROM backup_jobs WHERE id = %s", (job_id,)
                ).scalar_one()
            metrics = json.loads(pm)
            run["metrics_len_default"] = len(json.dumps(metrics))
            run["metrics_len_compact"] = len(json.dumps(metrics, separators=(",", ":")))
            run["stored_len"] = len(pm)
            run["chart_points"] = len(metrics.get("chart_data", []))
            run["snapshots_recorded"] = metrics.get("snapshots_recorded")
            run["points_left"] = left_points
            run["tracing"] = tracing
            (everys if every else runs).append(run)
        if not args.keep_data:
            c.mysql_delete_jobs(prefix)
        engine.dispose()

    timed = [r for r in runs if not r["tracing"]]
    rows = []
    for i, (run, ref) in enumerate(zip(timed, refs, strict=True)):
        rows.append(
            [
                f"#{i + 1}",
                run["seconds"],
                ref["seconds"],
                c.ratio(run["seconds"], ref["seconds"]),
                run["peak_growth_mb"],
                run["maxrss_delta_mb"],
                ref["peak_growth_mb"],
                run["metrics_len_default"],
                run["snapshots_recorded"],
                run["points_left"],
            ]
        )
    med = statistics.median
    med_run = med(r["seconds"] for r in timed)
    med_ref = med(r["seconds"] for r in refs)
    med_growth = med(r["peak_growth_mb"] for r in timed)
    rows.append(
        [
            "median",
            med_run,
            med_ref,
            c.ratio(med_run, med_ref),
            med_growth,
            med(r["maxrss_delta_mb"] for r in timed),
            med(r["peak_growth_mb"] for r in refs),
            "",
            "",
            "",
        ]
    )
    print(
        c.table(
            [
                "run",
                "rollup s",
                "SELECT * s",
                "ratio",
                "rollup peak +MB",
                "rollup maxrss +MB",
                "SELECT * peak +MB",
                "metrics bytes",
                "snapshots",
                "pts left",
            ],
            rows,
            f"\nRollup of one job with {args.points:,} job-level points (ours: RollupJob.roll_up_next(); "
            "reference: plain SELECT * + json.loads)",
        )
    )
    med_every = med(r["seconds"] for r in everys)
    med_agg = med(a["seconds"] for a in aggs)
    growth_every = med(r["peak_growth_mb"] for r in everys)
    print(
        c.table(
            ["path (same points)", "median s", "median peak +MB", "vs pushed down"],
            [
                ["pushed down: InfluxDB's aggregates (ours now)", med_run, med_growth, "1.00x"],
                ["every point read into Python (the previous path)", med_every, growth_every,
                 f"{c.ratio(med_every, med_run):.2f}x"],
                ["InfluxDB's own time for the aggregate statements", med_agg, "", f"{c.ratio(med_agg, med_run):.2f}x"],
                ["plain SELECT * + json.loads", med_ref, med(r["peak_growth_mb"] for r in refs),
                 f"{c.ratio(med_ref, med_run):.2f}x"],
            ],
            "\nThe same job rolled up both ways, side by side in this run",
        )
    )  # fmt: skip
    phase_rows = [[name, med(r["phases"][name] for r in timed)] for name in timed[0]["phases"]]
    phase_rows.append(["rest: claim, UPDATE, commit", med_run - sum(v for _, v in phase_rows)])
    med_floor = med(f["seconds"] for f in floors)
    phase_rows.append(["(reference: the reader's chunked query, bytes only, no parsing)", med_floor])
    every_samples = med(r["phases"]["reader.samples"] for r in everys)
    phase_rows.append(["(the previous path's reader.samples: every point read)", every_samples])
    phase_rows.append(["(that minus the chunked query: parsing + columns in Python)", every_samples - med_floor])
    print(c.table(["step of roll_up_next()", "median s"], phase_rows, "\nWhere the rollup time goes"))
    last = runs[-1]
    print(
        c.table(
            ["performance_metrics", "bytes"],
            [
                ["len(json.dumps(pm)) (default separators)", last["metrics_len_default"]],
                ["compact (separators=(',', ':'))", last["metrics_len_compact"]],
                ["as stored in MySQL", last["stored_len"]],
                ["chart_data points", last["chart_points"]],
            ],
            "\nSize of the rolled-up summary",
        )
    )
    tm = [r for r in runs if r["tracing"]]
    if tm:
        print(
            f"\ntracemalloc run: peak traced allocations {tm[0]['tracemalloc_peak_mb']:.1f} MB "
            f"(rollup with tracing on took {tm[0]['seconds']:.2f} s; peak RSS +{tm[0]['peak_growth_mb']:.1f} MB)"
        )
    growth_max = max(r["peak_growth_mb"] for r in timed)
    size_max = max(r["metrics_len_default"] for r in runs)
    print(
        c.table(
            ["target", "measured", "verdict"],
            [
                ["rollup < 1 s (median)", f"{med_run:.3f} s", c.verdict(med_run < 1.0)],
                ["pushed down < 0.25 s (median)", f"{med_run:.3f} s", c.verdict(med_run < 0.25)],
                ["pushed down memory growth < 10 MB (worst)", f"{growth_max:.1f} MB", c.verdict(growth_max < 10)],
                ["memory growth < 100 MB (worst peak RSS)", f"{growth_max:.1f} MB", c.verdict(growth_max < 100)],
                ["performance_metrics < 8 KB (8,192 B)", f"{size_max:,} B", c.verdict(size_max < 8192)],
                ["(ours / SELECT * time)", f"{c.ratio(med_run, med_ref):.2f}x", "-"],
                [
                    "raw points purged after rollup",
                    f"{sum(r['points_left'] for r in runs)} left",
                    c.verdict(all(r["points_left"] == 0 for r in runs)),
                ],
            ],
            "\nTargets",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
