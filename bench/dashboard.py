"""Dashboard timings in headless Chromium with 200 machines / 10,000 jobs, beside a bare Bokeh reference page.

    .venv/bin/python bench/dashboard.py [--machines 200] [--jobs 10000] [--repeat 5] [--keep-data]

Measures (1) navigation → the machines table's first row visible, and (2) selecting a job in the
Performance tab → its chart holding the job's points. The reference is a bare Bokeh server page with
one empty DataTable (1) and a button that fills a 200-point line chart through the server (2).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta

from _common import (
    PROJECT_DIR,
    api_process,
    bench_stack,
    cleanup_jobs,
    log,
    logs_dir,
    mysql_engine,
    run_id,
    summary_ms,
    table,
)

from tests.support.devstack import CHROMIUM, CHROMIUM_ARGS  # noqa: E402 - _common puts the project on sys.path

__all__ = ["main"]

DASHBOARD_PORT = 25006
BARE_DASHBOARD_PORT = 25007
CHART_POINTS = 200
LENGTH = "(n) => { const m = Bokeh.documents[0].get_model_by_name('speed-source');"
LENGTH += " const t = m.data instanceof Map ? m.data.get('t') : m.data.t; return t.length === n; }"

# The chart holds another job: all charts have CHART_POINTS points, their last time (the duration) differs.
LAST_T = "() => { const m = Bokeh.documents[0].get_model_by_name('speed-source');"
LAST_T += " const t = m.data instanceof Map ? m.data.get('t') : m.data.t; return t[t.length - 1]; }"
CHANGED = "(prev) => { const m = Bokeh.documents[0].get_model_by_name('speed-source');"
CHANGED += " const t = m.data instanceof Map ? m.data.get('t') : m.data.t;"
CHANGED += f" return t.length === {CHART_POINTS} && t[t.length - 1] !== prev; }}"

BARE_APP = f"""
from bokeh.application import Application
from bokeh.application.handlers import FunctionHandler
from bokeh.layouts import column
from bokeh.models import Button, ColumnDataSource, DataTable, TableColumn
from bokeh.plotting import figure
from bokeh.server.server import Server

def make(doc):
    table = DataTable(source=ColumnDataSource(dict(a=[])), columns=[TableColumn(field="a", title="A")])
    source = ColumnDataSource(dict(t=[], mbps=[]), name="speed-source")
    fig = figure(width=800, height=300)
    fig.line("t", "mbps", source=source)
    button = Button(label="fill")
    button.on_click(lambda: setattr(source, "data", dict(t=list(range({CHART_POINTS})), mbps=[1.0] * {CHART_POINTS})))
    doc.add_root(column(table, button, fig))

server = Server({{"/": Application(FunctionHandler(make))}}, port={BARE_DASHBOARD_PORT}, address="127.0.0.1",
                allow_websocket_origin=["127.0.0.1:{BARE_DASHBOARD_PORT}"])
server.start()
server.io_loop.start()
"""


def seed(prefix: str, machines: int, jobs: int) -> list[str]:
    """Insert jobs straight into backup_jobs, rolled up with a CHART_POINTS-point chart each; returns VM names."""
    from pipeline.db.tables import backup_jobs

    rng = random.Random(7)
    now = datetime.utcnow().replace(microsecond=0)
    vms = [f"{prefix}-vm-{i:03d}" for i in range(machines)]
    rows = []
    for n in range(jobs):
        vm = vms[n % machines]
        created = now - timedelta(hours=jobs - n)
        duration = rng.randint(300, 3600)
        status = "failed" if rng.random() < 0.1 else "completed"
        chart = [
            {
                "t": duration * i // CHART_POINTS,
                "s": rng.randint(50, 400) * 1_048_576,
                "p": 100.0 * i / CHART_POINTS,
                "phase": "snapshot" if i < 10 else "transferring",
            }
            for i in range(CHART_POINTS)
        ]
        size = rng.randint(1, 200) * 1_073_741_824
        rows.append(
            {
                "id": f"{prefix}-{n:05d}",
                "vm_name": vm,
                "repository_id": "repo-bench",
                "backup_type": rng.choice(["full", "incremental"]),
                "job_type": "backup",
                "status": status,
                "created_at": created,
                "started_at": created,
                "completed_at": created + timedelta(seconds=duration),
                "bytes_transferred": size,
                "total_bytes": size,
                "performance_metrics": {
                    "duration_seconds": duration,
                    "peak_speed_mbps": 400.0,
                    "avg_speed_mbps": 200.0,
                    "chart_data": chart,
                    "phase_durations": {},
                },
                "avg_speed_bps": 200 * 1_048_576,
                "rolled_up_at": created + timedelta(seconds=duration),
                "purged_at": created + timedelta(seconds=duration),
            }
        )
    engine = mysql_engine()
    try:
        with engine.begin() as conn:
            # Small batches: each row carries a ~13 kB chart, and MariaDB drops oversized packets.
            for start in range(0, len(rows), 100):
                conn.execute(backup_jobs.insert(), rows[start : start + 100])
    finally:
        engine.dispose()
    return vms


def wait_http(url: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=timeout).status_code == 200:  # the first page may be slow
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def measure(vm: str, repeat: int) -> dict[str, list[float]]:
    import httpx
    from playwright.sync_api import sync_playwright

    from dashboards.app.shaping import job_options

    machine = httpx.get(
        f"http://127.0.0.1:28082/api/v1/machines/{vm}", headers={"Authorization": "Bearer test-viewer-token"}
    ).json()
    labels = [label for _, label in job_options(machine["backups"])][: repeat + 1]
    out: dict[str, list[float]] = {"table": [], "chart": [], "bare_table": [], "bare_chart": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(repeat):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            start = time.perf_counter()
            page.goto(f"http://127.0.0.1:{DASHBOARD_PORT}/")
            page.locator(".slick-row").first.wait_for()
            out["table"].append(time.perf_counter() - start)
            # The table renders only the rows in view: find the machine with the search box first.
            page.locator("input.bk-input").first.fill(vm)
            page.locator(".slick-cell", has_text=vm).first.click()
            page.locator(".bk-tab", has_text="Performance").click()
            page.wait_for_function(LENGTH, arg=CHART_POINTS)
            for label in labels[1:2]:
                last = page.evaluate(LAST_T)
                start = time.perf_counter()
                page.locator("select.bk-input").select_option(label=label)
                page.wait_for_function(CHANGED, arg=last)
                out["chart"].append(time.perf_counter() - start)
            page.close()

            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            start = time.perf_counter()
            page.goto(f"http://127.0.0.1:{BARE_DASHBOARD_PORT}/")
            page.locator(".bk-DataTable").first.wait_for()
            out["bare_table"].append(time.perf_counter() - start)
            start = time.perf_counter()
            page.get_by_role("button", name="fill").click()
            page.wait_for_function(LENGTH, arg=CHART_POINTS)
            out["bare_chart"].append(time.perf_counter() - start)
            page.close()
        browser.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()
    prefix = run_id("dash")
    with bench_stack() as stack, api_process(stack, "granian"):
        log(f"seeding {args.machines} machines / {args.jobs} jobs as {prefix}-*")
        vms = seed(prefix, args.machines, args.jobs)
        env = {
            "SENDENSE_DASHBOARD_API_URL": stack.api_url,
            "SENDENSE_DASHBOARD_TOKEN": stack.viewer_token,
        }
        dash = stack.start_process(
            "dashboard", "--port", str(DASHBOARD_PORT), log_path=logs_dir() / "dashboard.log", env=env
        )
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP], cwd=PROJECT_DIR)
        try:
            wait_http(f"http://127.0.0.1:{DASHBOARD_PORT}/")
            wait_http(f"http://127.0.0.1:{BARE_DASHBOARD_PORT}/")
            samples = measure(vms[len(vms) // 2], args.repeat)
        finally:
            stack.stop_process(dash)
            stack.stop_process(bare)
            if not args.keep_data:
                cleanup_jobs(prefix)
    rows = []
    for name, ours, ref, budget in (
        ("table visible after navigation", "table", "bare_table", 2000),
        ("Performance chart after selecting a job", "chart", "bare_chart", 1000),
    ):
        a, b = summary_ms(samples[ours]), summary_ms(samples[ref])
        rows.append([name, a["p50"], a["max"], b["p50"], b["max"], budget, "ok" if a["max"] <= budget else "OVER"])
    print(
        table(
            ["measure", "dashboard p50 ms", "dashboard max ms", "bare Bokeh p50 ms", "bare max ms", "budget ms", ""],
            rows,
            title=f"Dashboard, {args.machines} machines / {args.jobs} jobs, {args.repeat} runs, headless Chromium",
        )
    )
    print(json.dumps({k: [round(v * 1000, 1) for v in vs] for k, vs in samples.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
