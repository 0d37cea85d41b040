"""The dashboard's download route streams: memory of `sendense dashboard` while it passes a large CSV on.

    .venv/bin/python bench/dashboard_download.py [--megabytes 500]

An upstream process stands in for the API's `GET /reports/estate.csv` (a CSV of `--megabytes`, written
in 64 KiB pieces as fast as it is read: the API's own streaming is bench/reports.py's); the dashboard
process reads it and passes it to an HTTP client that discards it. Printed: the dashboard's RSS before,
its peak while streaming and the growth (target < 100 MB for any size, as for the API's export), and the
throughput through the dashboard beside the same stream read straight from the upstream in the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

import httpx
from _common import PROJECT_DIR, log, logs_dir, rss_mb, table

UPSTREAM_PORT = int(os.environ.get("SENDENSE_BENCH_UPSTREAM_PORT", "28095"))
DASHBOARD_PORT = int(os.environ.get("SENDENSE_BENCH_DASHBOARD_PORT", "28096"))
TARGET_GROWTH_MB = 100.0

_UPSTREAM = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
TOTAL = int(sys.argv[2]) * 1024 * 1024
ROW = b"bench-job-000000,bench-vm,repo,incremental,backup,completed,2026-01-01 00:00:00Z,,,60,1048576,1048576,17476,\n"
PIECE = ROW * (65536 // len(ROW))
class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes: no length to know in advance
    def do_GET(self):
        if not self.path.startswith("/api/v1/reports/estate.csv"):
            self.send_error(404)  # only the export: a page's session would read /machines, /alerts from here
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/csv; charset=utf-8")
        self.send_header("Content-Disposition", 'attachment; filename="sendense-jobs.csv"')
        self.end_headers()
        sent = 0
        while sent < TOTAL:
            self.wfile.write(PIECE)
            sent += len(PIECE)
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Upstream).serve_forever()
"""


def _read(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    received = 0
    with httpx.stream("GET", url, timeout=120) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 16):
            received += len(chunk)
    return received, time.perf_counter() - started


def _wait(url: str, proc: subprocess.Popen) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=500)
    args = parser.parse_args()
    upstream = subprocess.Popen(
        [sys.executable, "-c", _UPSTREAM, str(UPSTREAM_PORT), str(args.megabytes)], stderr=subprocess.DEVNULL
    )
    env = {**os.environ, "SENDENSE_DASHBOARD_API_URL": f"http://127.0.0.1:{UPSTREAM_PORT}",
           "SENDENSE_DASHBOARD_TOKEN": "bench", "SENDENSE_DASHBOARD_PORT": str(DASHBOARD_PORT),
           "SENDENSE_DASHBOARD_USERS": ""}  # fmt: skip
    with open(logs_dir() / "dashboard-download.log", "w") as out:
        dashboard = subprocess.Popen(
            [str(PROJECT_DIR / ".venv/bin/sendense"), "dashboard"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait(f"http://127.0.0.1:{UPSTREAM_PORT}/health", upstream)
        # Not "/": a page would open a session, whose periodic reads are not what is measured.
        _wait(f"http://127.0.0.1:{DASHBOARD_PORT}/download/none.csv", dashboard)
        direct_bytes, direct_s = _read(f"http://127.0.0.1:{UPSTREAM_PORT}/api/v1/reports/estate.csv")
        before = rss_mb(dashboard.pid)
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                peak[0] = max(peak[0], rss_mb(dashboard.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        routed_bytes, routed_s = _read(f"http://127.0.0.1:{DASHBOARD_PORT}/download/estate.csv?period=30d")
        done.set()
        sampler.join()
    finally:
        for proc in (dashboard, upstream):
            proc.terminate()
            proc.wait(timeout=10)
    growth = peak[0] - before
    mb = 1024 * 1024
    print(table(
        ["path", "MB", "seconds", "MB/s", "ratio to direct"],
        [["upstream, read directly (reference)", direct_bytes / mb, direct_s, direct_bytes / mb / direct_s, 1.0],
         ["through the dashboard's /download route", routed_bytes / mb, routed_s, routed_bytes / mb / routed_s,
          (routed_bytes / routed_s) / (direct_bytes / direct_s)]],
        title="A CSV streamed through `sendense dashboard`",
    ))  # fmt: skip
    verdict = "MET" if growth < TARGET_GROWTH_MB else "MISSED"
    print(table(
        ["dashboard RSS before (MB)", "peak streaming (MB)", "growth (MB)", f"target < {TARGET_GROWTH_MB:.0f} MB"],
        [[before, peak[0], growth, verdict]],
    ))  # fmt: skip
    log(f"the dashboard's log: {logs_dir() / 'dashboard-download.log'}")
    return 0 if routed_bytes == direct_bytes else 1


if __name__ == "__main__":
    sys.exit(main())
