"""Benchmark: many operators at once — dashboard sessions in headless Chromium, some watching live jobs.

What it measures
    `--live` (20) running jobs on as many machines, fed one update a second each through the API's
    batch endpoint. One dashboard process (`python -m pipeline.cli dashboard`, as shipped) and one
    headless Debian Chromium with `--sessions` (50) tabs: `--live` of them open a machine's dialog, its
    Performance tab and its running job (as an operator does); the others show the machines table.
    Then `--minutes` (5) of watching. In every live tab a poller notes each moment its chart's data
    source changes; the interval between two changes is what the operator sees as the refresh (the
    view refreshes every 3 s, and each refresh has new points, so 3 s is the ideal).
    Prints: the refresh interval p50 / p99 / max over all live tabs and how late p99 is against 3 s;
    tabs that froze (no change for 10 s); CPU (cores) and RSS of the dashboard and the API during the
    watch; RSS per session (the dashboard's RSS with all tabs open minus before any, divided by the
    tabs).
    Reference in the same run: the same watch with one live tab only (the refresh as one operator
    sees it), so the ratio says what the other sessions cost.

Target (issue 14)
    refresh p99 < 1 s late with 50 sessions, 20 watching live jobs, for 5 minutes; no session frozen.

Usage
    .venv/bin/python bench/dashboard_sessions.py [--sessions 50] [--live 20] [--minutes 5]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from datetime import UTC, datetime

import _common as c
import httpx
from dashboard import wait_http

from tests.support.devstack import CHROMIUM, CHROMIUM_ARGS  # noqa: E402 - _common puts the project on sys.path

DASHBOARD_PORT = 25016
REFRESH_S = 3.0
FROZEN_S = 10.0
POLLER = """() => {
  window.__changes = [];
  let last = -1;
  setInterval(() => {
    const m = Bokeh.documents[0].get_model_by_name('speed-source');
    const t = m.data instanceof Map ? m.data.get('t') : m.data.t;
    const n = t.length ? t[t.length - 1] * 100000 + t.length : 0;
    if (n !== last) { window.__changes.push(performance.now()); last = n; }
  }, 50);
}"""


class Feeder(threading.Thread):
    """One update a second for every live job, in one batch request."""

    def __init__(self, api_url: str, job_ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.api_url, self.job_ids = api_url, job_ids
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.api_url, headers=c.AGENT_HEADERS, timeout=30.0) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                updates = [
                    {
                        "job_type": "backup",
                        "job_id": job_id,
                        "bytes_transferred": n * 10**7,
                        "total_bytes": 10**13,
                        "transfer_speed_bps": 10**8 + (n * 7919) % 10**7,
                        "progress_percent": min(99.0, n / 100),
                        "current_phase": "transferring",
                        "timestamp": datetime.now(UTC).isoformat(),
                    }
                    for job_id in self.job_ids
                ]
                r = client.post("/api/v1/telemetry/batch", json={"updates": updates})
                if r.status_code >= 300:
                    c.log(f"feeder: {r.status_code} {r.text[:200]}")
                self.sent += len(updates)
                self.stop.wait(1.0)


def open_tabs(
    browser, dashboard: str, api_url: str, viewer_token: str, vms: list[str], jobs: list[str], sessions: int
) -> tuple[list, list]:
    from dashboards.app.shaping import job_label

    viewer = httpx.Client(base_url=f"{api_url}/api/v1", headers={"Authorization": f"Bearer {viewer_token}"})
    live, idle = [], []
    for i in range(sessions):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(dashboard)
        page.locator(".slick-cell").first.wait_for(timeout=60_000)
        if i < len(vms):
            page.locator("input.bk-input").first.fill(vms[i])
            page.locator(".bk-Div", has_text="Machines 1–1 of 1").wait_for(timeout=60_000)
            page.locator(".sendense-machines .slick-cell", has_text=vms[i]).first.click()
            page.locator(".bk-Dialog").wait_for(timeout=60_000)
            page.locator(".bk-tab", has_text="Performance").click()
            label = job_label(viewer.get(f"/backups/{jobs[i]}").json())
            page.locator(".bk-Dialog select.bk-input").select_option(label=label)
            page.get_by_text("Job is running").first.wait_for(timeout=60_000)
            page.evaluate(POLLER)
            live.append(page)
        else:
            idle.append(page)
    viewer.close()
    return live, idle


class ClientSessions:
    """Sessions held by Bokeh's Python client (`bokeh.client.pull_session`), each on a thread and Tornado
    loop of its own: to the dashboard server they are sessions like a browser's (the page's document is
    built, its periodic callbacks run and every change is sent), but nothing renders them, so they cost
    this machine's two cores far less than browser tabs. Each counts the document changes it receives."""

    def __init__(self, dashboard: str, count: int) -> None:
        self.dashboard, self.count = dashboard, count
        self.sessions: list = []
        self.changes: list[int] = [0] * count
        self.threads: list[threading.Thread] = []
        self.ready = threading.Semaphore(0)

    def _run(self, index: int) -> None:
        from bokeh.client import pull_session
        from tornado.ioloop import IOLoop

        loop = IOLoop()
        session = pull_session(url=self.dashboard, io_loop=loop)
        self.sessions.append((session, loop))

        def changed(_event: object) -> None:
            self.changes[index] += 1

        session.document.on_change(changed)
        self.ready.release()
        # Bokeh 3 keeps the "read messages until closed" loop private (it discourages Python clients for
        # anything but tests); a benchmark is such a use.
        session._loop_until_closed()

    def open(self) -> None:
        for i in range(self.count):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True)
            thread.start()
            self.threads.append(thread)
            if not self.ready.acquire(timeout=60):
                raise RuntimeError(f"Bokeh client session {i} did not connect within 60 s")

    def close(self) -> None:
        for session, loop in self.sessions:
            loop.add_callback(session.close)
        for thread in self.threads:
            thread.join(timeout=10)


def intervals(pages: list) -> tuple[list[float], int]:
    """Every interval (s) between two chart changes in the given tabs, and how many tabs froze."""
    out, frozen = [], 0
    for page in pages:
        changes, now = page.evaluate("() => [window.__changes, performance.now()]")
        gaps = [(b - a) / 1000 for a, b in zip(changes[1:], changes[2:], strict=False)]  # the first: the poller's start
        tail = (now - changes[-1]) / 1000 if changes else float("inf")
        if not gaps or max(gaps) > FROZEN_S or tail > FROZEN_S:
            frozen += 1
        out.extend(gaps)
    return out, frozen


def watch(processes: dict[str, int], pages: list, minutes: float) -> dict:
    cpu0 = {name: c.process_tree_cpu(pid) for name, pid in processes.items()}
    t0 = time.monotonic()
    time.sleep(minutes * 60)
    seconds = time.monotonic() - t0
    gaps, frozen = intervals(pages)
    return {
        "gaps": gaps,
        "frozen": frozen,
        "cpu": {name: (c.process_tree_cpu(pid) - cpu0[name]) / seconds for name, pid in processes.items()},
        "rss": {name: c.tree_rss_mb(pid) for name, pid in processes.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--live", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument(
        "--idle-client",
        choices=["bokeh", "chromium"],
        default="bokeh",
        help="what holds the sessions that do not watch a live job: Bokeh's Python client (default; the "
        "browser tabs' rendering would otherwise load the 2 cores the servers run on) or more Chromium tabs",
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(c.machine_note())
    prefix = c.run_id("sessions")
    vms = [f"{prefix}-vm-{i:02d}" for i in range(args.live)]
    with c.bench_stack() as stack, c.api_process(stack, "granian") as api:
        jobs = []
        with httpx.Client(base_url=stack.api_url, headers=c.AGENT_HEADERS, timeout=30.0) as client:
            for vm in vms:
                body = {"vm_name": vm, "backup_type": "incremental", "repository_id": "bench-repo"}
                jobs.append(client.post("/api/v1/backups", json=body).json()["backup_id"])
        feeder = Feeder(stack.api_url, jobs)
        feeder.start()
        env = {"SENDENSE_DASHBOARD_API_URL": stack.api_url, "SENDENSE_DASHBOARD_TOKEN": stack.viewer_token}
        dash = stack.start_process(
            "dashboard", "--port", str(DASHBOARD_PORT), log_path=c.logs_dir() / "dashboard-sessions.log", env=env
        )
        dashboard = f"http://127.0.0.1:{DASHBOARD_PORT}/"
        results = {}
        try:
            wait_http(dashboard, timeout=60.0)
            processes = {"dashboard": dash.pid, "api": api.pid}
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                # Reference: one operator watching one live job.
                rss_before = c.tree_rss_mb(dash.pid)
                c.log("reference: one tab watching one live job")
                live, idle = open_tabs(browser, dashboard, stack.api_url, stack.viewer_token, vms[:1], jobs[:1], 1)
                results["one live tab"] = watch(processes, live, min(args.minutes, 1.0))
                for page in live + idle:
                    page.close()
                time.sleep(3)
                rss_empty = c.tree_rss_mb(dash.pid)
                tabs = args.sessions if args.idle_client == "chromium" else args.live
                c.log(f"opening {tabs} tabs, {args.live} of them watching live jobs")
                live, idle = open_tabs(browser, dashboard, stack.api_url, stack.viewer_token, vms, jobs, tabs)
                clients = ClientSessions(dashboard, args.sessions - tabs)
                if clients.count:
                    c.log(f"opening {clients.count} more sessions with Bokeh's Python client")
                    clients.open()
                rss_open = c.tree_rss_mb(dash.pid)
                c.log(f"watching for {args.minutes} min")
                changes0 = list(clients.changes)
                results[f"{args.sessions} sessions, {args.live} live"] = watch(processes, live, args.minutes)
                client_changes = [b - a for a, b in zip(changes0, clients.changes, strict=True)]
                clients.close()
                browser.close()
        finally:
            feeder.stop.set()
            stack.stop_process(dash)
        c.cleanup_jobs(prefix)

    rows, verdicts = [], []
    for name, r in results.items():
        s = c.summary_ms(r["gaps"])
        rows.append(
            [name, len(r["gaps"]), s["p50"], s["p99"], s["max"], s["p99"] - REFRESH_S * 1000, r["frozen"],
             r["cpu"]["dashboard"], r["cpu"]["api"], r["rss"]["dashboard"], r["rss"]["api"]]
        )  # fmt: skip
    print(
        c.table(
            ["watch", "refreshes", "interval p50 ms", "p99 ms", "max ms", "p99 late ms", "frozen tabs",
             "dashboard cores", "API cores", "dashboard RSS MB", "API RSS MB"],
            rows,
            f"\nRefreshes as the browser sees them (chart changes; the ideal is every {REFRESH_S:.0f} s), "
            f"{args.minutes} min, live tabs in headless Chromium, other sessions: {args.idle_client}",
        )
    )  # fmt: skip
    per_session = (rss_open - rss_empty) / args.sessions
    print(
        f"\nDashboard RSS: {rss_before:.1f} MB before any tab, {rss_empty:.1f} MB after the reference, "
        f"{rss_open:.1f} MB with {args.sessions} sessions open: {per_session:.2f} MB per session"
    )
    if client_changes:
        print(
            f"Sessions held by Bokeh's Python client: {len(client_changes)}; document changes each received "
            f"during the watch: min {min(client_changes)}, median {sorted(client_changes)[len(client_changes) // 2]}"
        )
    many = results[f"{args.sessions} sessions, {args.live} live"]
    late = c.summary_ms(many["gaps"])["p99"] - REFRESH_S * 1000
    verdicts.append([f"refresh p99 < 1 s late ({args.sessions} sessions, {args.live} live)", f"{late:.0f} ms",
                     c.verdict(late < 1000)])  # fmt: skip
    verdicts.append(["no session frozen", f"{many['frozen']} frozen", c.verdict(many["frozen"] == 0)])
    print(c.table(["target", "measured", "verdict"], verdicts, "\nTargets"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
