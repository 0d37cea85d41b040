"""A large estate: 10,000 machines and 1,000,000 jobs. The flows table through the API and in the dashboard.

What it measures
    Jobs are loaded with one INSERT … SELECT (a generated sequence, 100 jobs a machine over the past
    two years, 5 % failed), then the machines' counters are filled the way migration 0003 fills
    them. Then, against the real API and dashboard:
      * GET /machines, first page (100 rows) in the default order (most overdue RPO first), by VM
        name, a search, a later page; GET /machines/{vm}: p50/p99 of 50 requests each, and bytes;
      * reference, in the same run: the per-VM GROUP BY over backup_jobs that GET /machines ran
        before the counters (the query of commit 0f9f651), timed on the same data;
      * the dashboard: navigation until the machines table's first row is visible in headless
        Chromium, beside a bare Bokeh page with an empty table (bench/dashboard.py's reference).

Usage
    .venv/bin/python bench/estate.py [--machines 10000] [--jobs-per-machine 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import _common as c
import httpx
from dashboard import BARE_APP, BARE_DASHBOARD_PORT, DASHBOARD_PORT, wait_http
from sqlalchemy import text

from tests.support.devstack import CHROMIUM, CHROMIUM_ARGS

# What GET /machines ran before the counters (pipeline/machines.py at 0f9f651): every job grouped.
OLD_FLOWS = """
SELECT j.vm_name, j.repository_id, j.id, j.backup_type, j.job_type, j.status, j.created_at, j.completed_at,
       j.bytes_transferred, j.total_bytes, s.total_jobs, s.successful, s.failed, s.cancelled, s.running,
       s.protected_bytes, m.cpu_count, m.memory_mb, m.os_type, m.disk_count, m.protection_flow
FROM (
    SELECT vm_name, COUNT(*) AS total_jobs, SUM(status = 'completed') AS successful, SUM(status = 'failed') AS failed,
           SUM(status = 'cancelled') AS cancelled, SUM(status IN ('pending', 'running')) AS running,
           SUM(CASE WHEN status = 'completed' THEN bytes_transferred ELSE 0 END) AS protected_bytes,
           MAX(created_at) AS last_at
    FROM backup_jobs WHERE vm_name LIKE :prefix GROUP BY vm_name
) AS s
JOIN backup_jobs AS j ON j.vm_name = s.vm_name AND j.created_at = s.last_at
LEFT JOIN machines AS m ON m.vm_name = s.vm_name
ORDER BY j.created_at DESC, j.id DESC
"""

_DIGITS = "WITH RECURSIVE d AS (SELECT 0 AS i UNION ALL SELECT i + 1 FROM d WHERE i < 999) "


def load(prefix: str, machines: int, per_machine: int, *, fill_machines: bool = True, spacing: int = 63) -> None:
    """Insert the jobs by plain SQL; then, unless told not to, fill the machines' counters as migration 0003 does."""
    jobs = machines * per_machine
    # One statement inserting a million rows takes minutes: past the pipeline's 30 s statement timeout.
    os.environ["SENDENSE_MYSQL_QUERY_TIMEOUT"] = "3600"
    engine = c.mysql_engine()
    t = time.perf_counter()
    with engine.begin() as conn:
        # One statement for all jobs: a 1,000 × 1,000 sequence, job k on machine k % machines.
        conn.execute(
            text(
                "INSERT INTO backup_jobs (id, vm_name, repository_id, backup_type, job_type, status, created_at, "
                "started_at, completed_at, bytes_transferred, total_bytes, avg_speed_bps, rolled_up_at, purged_at) "
                + _DIGITS
                + "SELECT CONCAT(:prefix, '-', k), CONCAT(:prefix, '-vm-', LPAD(k MOD :machines, 5, '0')), "
                "CONCAT('repo-', k MOD 7), IF(k MOD 7 = 0, 'full', 'incremental'), 'backup', "
                "IF(k MOD 20 = 0, 'failed', 'completed'), t, t, t + INTERVAL 3600 SECOND, "
                "(k MOD 97 + 1) * 1073741824, (k MOD 97 + 1) * 1073741824, 200 * 1048576, "
                "t + INTERVAL 3601 SECOND, t + INTERVAL 3601 SECOND "
                "FROM (SELECT a.i * 1000 + b.i AS k, "
                "UTC_TIMESTAMP(6) - INTERVAL (:jobs - (a.i * 1000 + b.i)) * :spacing SECOND AS t "
                "FROM d AS a CROSS JOIN d AS b WHERE a.i * 1000 + b.i < :jobs) AS s"
            ),
            {"prefix": prefix, "machines": machines, "jobs": jobs, "spacing": spacing},
        )
        c.log(f"{jobs:,} jobs inserted in {time.perf_counter() - t:.0f} s")
        if not fill_machines:
            return
        # As migration 0003 fills them on an existing database.
        conn.execute(
            text(
                "INSERT INTO machines (vm_name, repository_id, created_at, updated_at, total_jobs, successful, "
                "failed, cancelled, protected_bytes, last_job_at, last_success_at) "
                "SELECT vm_name, MAX(repository_id), MIN(created_at), MAX(created_at), COUNT(*), "
                "SUM(status = 'completed'), SUM(status = 'failed'), SUM(status = 'cancelled'), "
                "SUM(CASE WHEN status = 'completed' THEN bytes_transferred ELSE 0 END), MAX(created_at), "
                "MAX(CASE WHEN status = 'completed' THEN completed_at END) "
                "FROM backup_jobs WHERE vm_name LIKE :like GROUP BY vm_name"
            ),
            {"like": f"{prefix}-vm-%"},
        )
        conn.execute(
            text(
                "UPDATE machines AS m SET m.last_job_id = (SELECT j.id FROM backup_jobs AS j "
                "WHERE j.vm_name = m.vm_name ORDER BY j.created_at DESC, j.id DESC LIMIT 1) WHERE m.vm_name LIKE :like"
            ),
            {"like": f"{prefix}-vm-%"},
        )
    c.log(f"estate loaded in {time.perf_counter() - t:.0f} s")
    engine.dispose()


def timed_gets(url: str, params: dict | None, n: int = 50) -> tuple[dict[str, float], int]:
    times, size = [], 0
    with httpx.Client(headers={"Authorization": "Bearer test-viewer-token"}, timeout=60) as client:
        for _ in range(n):
            t = time.perf_counter()
            response = client.get(url, params=params)
            times.append(time.perf_counter() - t)
            response.raise_for_status()
            size = len(response.content)
    return c.summary_ms(times), size


def dashboard_table(repeat: int) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    ours, bare = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(repeat):
            for port, out, ready in (
                (DASHBOARD_PORT, ours, ".slick-row"),
                (BARE_DASHBOARD_PORT, bare, ".bk-DataTable"),
            ):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                t = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/")
                page.locator(ready).first.wait_for(timeout=60_000)
                out.append(time.perf_counter() - t)
                page.close()
        browser.close()
    return ours, bare


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=10_000)
    parser.add_argument("--jobs-per-machine", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()
    prefix = c.run_id("estate")
    rows = []
    with c.bench_stack() as stack, c.api_process(stack, "granian"):
        load(prefix, args.machines, args.jobs_per_machine)
        base = f"{stack.api_url}/api/v1/machines"
        vm = f"{prefix}-vm-{args.machines // 2:05d}"
        for name, url, params in (
            ("GET /machines (first 100, most overdue first)", base, None),
            ("GET /machines?sort=vm_name", base, {"sort": "vm_name", "order": "asc"}),
            ("GET /machines?search=<one VM>", base, {"search": vm}),
            ("GET /machines?offset=5000", base, {"offset": 5000}),
            ("GET /machines/{vm} (100 jobs)", f"{base}/{vm}", None),
        ):
            summary, size = timed_gets(url, params)
            rows.append([name, summary["p50"], summary["p99"], f"{size:,}"])
        engine = c.mysql_engine()
        old = []
        for _ in range(2):
            t = time.perf_counter()
            with engine.connect() as conn:
                count = len(conn.execute(text(OLD_FLOWS), {"prefix": f"{prefix}-vm-%"}).all())
            old.append(time.perf_counter() - t)
        engine.dispose()
        rows.append(
            [f"reference: the previous GROUP BY over every job ({count:,} rows)", min(old) * 1000, max(old) * 1000, "-"]
        )
        env = {"SENDENSE_DASHBOARD_API_URL": stack.api_url, "SENDENSE_DASHBOARD_TOKEN": stack.viewer_token}
        dash = stack.start_process("dashboard", "--port", str(DASHBOARD_PORT), log_path=c.logs_dir() / "d.log", env=env)
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP], cwd=c.PROJECT_DIR)
        try:
            wait_http(f"http://127.0.0.1:{DASHBOARD_PORT}/", timeout=60)
            wait_http(f"http://127.0.0.1:{BARE_DASHBOARD_PORT}/")
            ours, ref = dashboard_table(args.repeat)
        finally:
            stack.stop_process(dash)
            stack.stop_process(bare)
            if not args.keep_data:
                c.cleanup_jobs(prefix)
                with c.mysql_engine().begin() as conn:
                    conn.execute(text("DELETE FROM machines WHERE vm_name LIKE :like"), {"like": f"{prefix}-vm-%"})
    print(c.machine_note())
    print(
        c.table(
            ["request", "p50 ms", "p99 ms (max for the reference)", "bytes"],
            rows,
            f"\n{args.machines:,} machines, {args.machines * args.jobs_per_machine:,} jobs: 50 requests each",
        )
    )
    print(
        c.table(
            ["page", "p50 ms", "max ms"],
            [
                ["dashboard: machines table visible", statistics.median(ours) * 1000, max(ours) * 1000],
                ["bare Bokeh page with an empty table", statistics.median(ref) * 1000, max(ref) * 1000],
            ],
            f"\nDashboard in headless Chromium, {args.repeat} navigations each",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
