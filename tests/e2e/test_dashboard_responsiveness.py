"""One slow API answer holds up only the session that asked for it, not every open dashboard."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import DASHBOARD_PORT, _start_dashboard
from tests.support.devstack import DevStack

SLOW_SECONDS = 6.0
MACHINE = {
    "vm_name": "slow-vm",
    "repository_id": "r",
    "total_backups": 0,
    "success_rate": None,
    "last_backup": {},
    "rpo": {"rpo_seconds": 86400, "age_seconds": None, "out_of_rpo": True},
}


class _SlowApi(BaseHTTPRequestHandler):
    """Stands in for the API (not for a store): the table and the alerts answer at once, one machine takes 6 s."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith("/api/v1/machines/"):
            time.sleep(SLOW_SECONDS)
            body = {**MACHINE, "machine": {}, "kpis": {}, "trend": [], "backups": [], "anomalies": []}
        elif self.path.startswith("/api/v1/machines"):
            body = {"machines": [MACHINE], "total": 1}
        elif self.path.startswith("/api/v1/alerts"):
            body = {"alerts": [], "total": 0, "firing": {"critical": 0, "warning": 0, "info": 0}}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def slow_dashboard(stack: DevStack) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proc, url = _start_dashboard(
        stack, f"http://127.0.0.1:{server.server_address[1]}", DASHBOARD_PORT + 4, "dashboard-slow-api.log"
    )
    yield url
    stack.stop_process(proc)
    server.shutdown()


def test_a_slow_answer_for_one_session_does_not_freeze_another(slow_dashboard: str, browser):
    first: Page = browser.new_page()
    first.goto(slow_dashboard)
    first.locator(".slick-cell", has_text="slow-vm").first.click()  # its details take 6 s to come
    time.sleep(0.5)
    second: Page = browser.new_page()
    started = time.monotonic()
    second.goto(slow_dashboard)
    expect(second.locator(".slick-cell", has_text="slow-vm").first).to_be_visible(timeout=SLOW_SECONDS * 1000)
    waited = time.monotonic() - started
    assert waited < SLOW_SECONDS / 2, f"the second session waited {waited:.1f} s behind the first one's request"
    expect(first.locator(".bk-Dialog")).to_be_visible(timeout=SLOW_SECONDS * 2000)
    first.close()
    second.close()
