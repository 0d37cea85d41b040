"""Failure risk at estate scale: what keeping it costs, and GET /machines?sort=risk beside the other orders.

What it measures
    The estate of bench/estate.py (`--machines` machines, `--jobs-per-machine` jobs each, loaded by plain
    SQL, 5 % failed), then, in the same run:
      * the reads the risk adds: the last 10 finished runs of every machine (recent_runs, 200 machines a
        query, as a reconcile batch reads them);
      * `sendense reconcile --all`'s work (SummaryReconciler.run("all")): it finds no counter to correct
        and assesses every machine's failure risk (their columns start NULL, as after migration 0010):
        seconds in all and per machine; then again, when every machine was assessed since its last job
        and a full run skips it (what the daily run costs when rollups keep the risk);
      * `JobStore.assess_risk` of one machine, 200 times: what each rollup of a backup now adds;
      * GET /machines?sort=risk (first page, riskiest first) and a later page, beside the default order
        (most overdue RPO first) and sort=vm_name: p50/p99 of 50 requests each;
      * reference: the primary-key read of one machine's row (the floor of any request).

Usage
    .venv/bin/python bench/risk_estate.py [--machines 10000] [--jobs-per-machine 100]
"""

from __future__ import annotations

import argparse
import sys
import time

import _common as c
from estate import load, timed_gets
from sqlalchemy import text

from pipeline.insight.recent_runs import recent_runs
from pipeline.jobs.store import JobStore
from pipeline.reconcile.store import SummaryReconciler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=10_000)
    parser.add_argument("--jobs-per-machine", type=int, default=100)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()
    prefix = c.run_id("riskestate")
    work, requests = [], []
    note = c.machine_note()
    with c.bench_stack() as stack, c.api_process(stack, "granian"):
        load(prefix, args.machines, args.jobs_per_machine)
        engine = c.mysql_engine()
        try:
            store = JobStore(engine)
            names = [f"{prefix}-vm-{i:05d}" for i in range(args.machines)]
            t = time.perf_counter()
            with engine.connect() as conn:
                for i in range(0, len(names), 200):
                    recent_runs(conn, names[i : i + 200])
            seconds = time.perf_counter() - t
            work.append(["its reads alone: the last 10 runs of every machine, 200 a query", f"{seconds:.1f} s",
                         f"{seconds / args.machines * 1000:.2f} ms", "-"])  # fmt: skip
            for label in ("every machine assessed (columns NULL)", "again: assessed since their last job, skipped"):
                t = time.perf_counter()
                report = SummaryReconciler(engine, store).run("all")
                seconds = time.perf_counter() - t
                work.append(
                    [f"reconcile --all, {label}", f"{seconds:.1f} s", f"{seconds / args.machines * 1000:.2f} ms",
                     f"{report.risk_reassessed:,} written"]
                )  # fmt: skip
            vm = f"{prefix}-vm-{args.machines // 2:05d}"
            times = []
            for _ in range(200):
                t = time.perf_counter()
                store.assess_risk([vm])
                times.append(time.perf_counter() - t)
            one = c.summary_ms(times)
            work.append(["JobStore.assess_risk of one machine (per rollup)", f"p50 {one['p50']:.2f} ms",
                         f"p99 {one['p99']:.2f} ms", "1 written"])  # fmt: skip
            times = []
            with engine.connect() as conn:
                for _ in range(200):
                    t = time.perf_counter()
                    conn.execute(text("SELECT * FROM machines WHERE vm_name = :vm"), {"vm": vm}).one()
                    times.append(time.perf_counter() - t)
            pk = c.summary_ms(times)
            work.append(["reference: primary-key read of its row", f"p50 {pk['p50']:.2f} ms",
                         f"p99 {pk['p99']:.2f} ms", "-"])  # fmt: skip
            base = f"{stack.api_url}/api/v1/machines"
            timed_gets(base, None, n=10)  # warm-up: the first requests of a fresh process pay for its caches
            for name, url, params in (
                ("GET /machines (most overdue RPO first)", base, None),
                ("GET /machines?sort=risk (first 100, riskiest first)", base, {"sort": "risk"}),
                ("GET /machines?sort=vm_name", base, {"sort": "vm_name", "order": "asc"}),
                ("GET /machines?sort=risk&offset=5000", base, {"sort": "risk", "offset": 5000}),
                ("GET /machines/{vm} (100 jobs)", f"{base}/{vm}", None),
            ):
                summary, size = timed_gets(url, params)
                requests.append([name, summary["p50"], summary["p99"], f"{size:,}"])
        finally:
            if not args.keep_data:
                c.cleanup_jobs(prefix)
                with engine.begin() as conn:
                    conn.execute(text("DELETE FROM machines WHERE vm_name LIKE :like"), {"like": f"{prefix}-vm-%"})
            engine.dispose()
    print(note)
    scale = f"{args.machines:,} machines, {args.machines * args.jobs_per_machine:,} jobs"
    print(c.table(["work", "time", "per machine / p99", "rows"], work, f"\nKeeping the risk, {scale}"))
    print(c.table(["request", "p50 ms", "p99 ms", "bytes"], requests, f"\nThe flows table, {scale}: 50 requests each"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
