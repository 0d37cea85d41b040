"""Reconciling a large estate whose jobs were written outside the pipeline: time and memory.

What it measures
    10,000 machines and 1,000,000 jobs are loaded with plain SQL (bench/estate.py's loader), without
    the machines' counters: what the job sheet's engine or a restored dump leaves (GET /machines lists
    none of them). Then, in one run, on the same data:
      * `sendense reconcile` (changed): every job is marked, every machine recomputed and created;
      * the same again right after (the overlap window sees the marks again: nothing to correct);
      * `sendense reconcile --all`;
      * references: the one-statement GROUP BY over every job (how migration 0003 fills the counters,
        holding locks on the whole table meanwhile) and a primary-key read.
    Memory: the Python heap's peak during each run (tracemalloc) and the process's RSS growth.

Usage
    .venv/bin/python bench/reconcile.py [--machines 10000] [--jobs-per-machine 100] [--batch 200]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc

import _common as c
from estate import load
from sqlalchemy import text


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=10_000)
    parser.add_argument("--jobs-per-machine", type=int, default=100)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()
    prefix = c.run_id("reconcile")
    rows = []
    with c.bench_stack():
        load(prefix, args.machines, args.jobs_per_machine, fill_machines=False)
        from pipeline.jobs.store import JobStore
        from pipeline.reconcile.store import SummaryReconciler

        engine = c.mysql_engine()
        like = f"{prefix}-vm-%"
        try:
            with engine.connect() as conn:
                listed = conn.execute(
                    text("SELECT COUNT(*) FROM machines WHERE vm_name LIKE :like AND total_jobs > 0"), {"like": like}
                ).scalar_one()
            c.log(f"machines listed before the reconcile: {listed}")
            reconciler = SummaryReconciler(engine, JobStore(engine), batch_size=args.batch)
            for name, mode in (
                ("reconcile (changed): every job marked", "changed"),
                ("reconcile (changed) again: nothing to correct", "changed"),
                ("reconcile --all", "all"),
            ):
                tracemalloc.start()
                rss = _rss_mb()
                t = time.perf_counter()
                report = reconciler.run(mode)
                seconds = time.perf_counter() - t
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                rows.append(
                    [
                        name,
                        f"{seconds:.1f}",
                        f"{report.machines_checked:,}",
                        f"{report.machines_corrected:,}",
                        f"{peak / 1e6:.1f}",
                        f"{_rss_mb() - rss:.1f}",
                    ]
                )
                c.log(f"{name}: {seconds:.1f} s, {report.machines_corrected:,} corrected")
            with engine.connect() as conn:
                listed = conn.execute(
                    text("SELECT COUNT(*) FROM machines WHERE vm_name LIKE :like AND total_jobs > 0"), {"like": like}
                ).scalar_one()
                wrong = conn.execute(
                    text(
                        "SELECT COUNT(*) FROM machines AS m JOIN (SELECT vm_name, COUNT(*) AS n FROM backup_jobs "
                        "WHERE vm_name LIKE :like GROUP BY vm_name) AS s ON s.vm_name = m.vm_name "
                        "WHERE m.total_jobs <> s.n"
                    ),
                    {"like": like},
                ).scalar_one()
                t = time.perf_counter()
                conn.execute(
                    text(
                        "SELECT vm_name, COUNT(*), SUM(status = 'completed'), SUM(status = 'failed'), "
                        "SUM(status = 'cancelled'), SUM(CASE WHEN status = 'completed' THEN bytes_transferred "
                        "ELSE 0 END), MAX(created_at), MAX(CASE WHEN status = 'completed' THEN completed_at END) "
                        "FROM backup_jobs WHERE vm_name LIKE :like GROUP BY vm_name"
                    ),
                    {"like": like},
                ).all()
                group_by = time.perf_counter() - t
                t = time.perf_counter()
                for i in range(100):
                    conn.execute(text("SELECT * FROM backup_jobs WHERE id = :id"), {"id": f"{prefix}-{i}"}).all()
                pk = (time.perf_counter() - t) / 100
            rows.append(["reference: one GROUP BY over every job (no writes)", f"{group_by:.1f}", "-", "-", "-", "-"])
            rows.append(["reference: primary-key read", f"{pk * 1000:.2f} ms", "-", "-", "-", "-"])
        finally:
            engine.dispose()
            if not args.keep_data:
                c.cleanup_jobs(prefix)
                with c.mysql_engine().begin() as conn:
                    conn.execute(text("DELETE FROM machines WHERE vm_name LIKE :like"), {"like": like})
    print(c.machine_note())
    print(
        c.table(
            ["run", "seconds", "machines checked", "corrected", "heap peak MB", "RSS growth MB"],
            rows,
            f"\n{args.machines:,} machines, {args.machines * args.jobs_per_machine:,} jobs written by plain SQL, "
            f"batches of {args.batch} machines; afterwards {listed:,} machines listed, {wrong} with a wrong count",
        )
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("SENDENSE_MYSQL_QUERY_TIMEOUT", "3600")
    sys.exit(main())
