"""Browser-test fixtures: the dashboard process against the test API, seeded jobs, headless Debian Chromium."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import OUTPUT_DIR
from tests.support.devstack import CHROMIUM, CHROMIUM_ARGS, DevStack, wait_until_live
from tests.support.probes import update_body

DASHBOARD_PORT = int(os.environ.get("SENDENSE_TEST_DASHBOARD_PORT", "15006"))
# Generous but bounded: every wait in the browser tests ends within this many milliseconds.
BROWSER_TIMEOUT_MS = 20_000
SCREENSHOTS = OUTPUT_DIR / "screenshots"


def _start_dashboard(stack: DevStack, api_url: str, port: int, log_name: str):
    """`sendense dashboard` as its own process on `port`, reading `api_url` with the viewer token."""
    env = {
        "SENDENSE_DASHBOARD_API_URL": api_url,
        "SENDENSE_DASHBOARD_TOKEN": stack.viewer_token,
        "SENDENSE_DASHBOARD_PORT": str(port),
    }
    proc = stack.start_process("dashboard", log_path=OUTPUT_DIR / log_name, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_live(url, 30.0, proc)
    except RuntimeError as exc:
        stack.stop_process(proc)
        raise RuntimeError(f"{exc}; see {OUTPUT_DIR / log_name}") from None
    return proc, url


@pytest.fixture(scope="session")
def dashboard(api: str, stack: DevStack) -> Iterator[str]:
    proc, url = _start_dashboard(stack, api, DASHBOARD_PORT, "dashboard.log")
    yield url
    stack.stop_process(proc)


@pytest.fixture
def dashboard_without_api(stack: DevStack) -> Iterator[str]:
    """A dashboard whose API is down (nothing listens on its port)."""
    proc, url = _start_dashboard(stack, "http://127.0.0.1:9", DASHBOARD_PORT + 1, "dashboard-no-api.log")
    yield url
    stack.stop_process(proc)


@dataclass
class SeededMachine:
    """One VM with a completed, a failed, a no-telemetry and a running job (kept running by a thread)."""

    vm_name: str
    completed: str
    failed: str
    no_telemetry: str
    running: str
    other_vm: str


@pytest.fixture(scope="session")
def seeded(api: str, stack: DevStack, settings) -> Iterator[SeededMachine]:
    from pipeline.scheduler import SchedulerJobs

    suffix = f"{int(time.time())}"
    vm = f"dash-vm-{suffix}"
    ids = {kind: f"backup-{vm}-{kind}" for kind in ("completed", "failed", "none", "running")}
    headers = {"Authorization": f"Bearer {stack.agent_token}"}
    client = httpx.Client(base_url=f"{api}/api/v1", headers=headers, timeout=30)

    def create(job_id: str, vm_name: str, backup_type: str) -> None:
        # The selector labels jobs "timestamp – type" to the second: one second apart keeps labels unique.
        time.sleep(1.0)
        body = {
            "vm_name": vm_name,
            "backup_type": backup_type,
            "repository_id": "repo-dash",
            "backup_id": job_id,
            "machine": {"cpu_count": 4, "memory_mb": 8192, "os_type": "linux", "protection_flow": "nightly"},
        }
        response = client.post("/backups", json=body)
        assert response.status_code == 201, response.text

    def post(job_id: str, i: int, total: int = 40, **extra) -> httpx.Response:
        phase = "snapshot" if i < 4 else "transferring"
        body = update_body(i, total=total, current_phase=phase, **extra)
        # Sizes in tens of MB so that the tables show readable numbers.
        body["bytes_transferred"], body["total_bytes"] = i * 25_000_000, total * 25_000_000
        return client.post(f"/telemetry/backup/{job_id}", json=body)

    create(ids["completed"], vm, "full")
    for i in range(1, 13):
        assert post(ids["completed"], i).status_code == 202
        time.sleep(0.05)
    assert post(ids["completed"], 40, status="completed").status_code == 200
    create(ids["failed"], vm, "incremental")
    for i in range(1, 6):
        assert post(ids["failed"], i * 3).status_code == 202
    assert post(ids["failed"], 16, status="failed", error_message="NBD reset").status_code == 200
    create(ids["none"], vm, "incremental")
    other = f"dash-other-{suffix}"
    create(f"backup-{other}-1", other, "full")
    unbounded = dataclasses.replace(settings.scheduler, rollup_batch=1_000_000)
    jobs = SchedulerJobs(dataclasses.replace(settings, scheduler=unbounded))
    jobs.roll_up()
    jobs.close()

    # The running job gets one update every 0.5 s for as long as the session lasts.
    create(ids["running"], vm, "incremental")
    stop = threading.Event()

    def keep_running() -> None:
        i = 1
        # Never reaches 100 %: the session outlives any test's wait (10,000 updates = 83 min).
        while not stop.is_set():
            post(ids["running"], i, total=10_000)
            i += 1
            stop.wait(0.5)

    assert post(ids["running"], 0, total=10_000).status_code == 202
    feeder = threading.Thread(target=keep_running, daemon=True)
    feeder.start()
    yield SeededMachine(vm, ids["completed"], ids["failed"], ids["none"], ids["running"], other)
    stop.set()
    feeder.join(timeout=5)
    client.close()


@pytest.fixture(scope="module")
def browser():
    # Module scope: Playwright's sync API keeps an event loop running in this thread until it
    # stops, which would break every later test that runs asyncio.
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        # Playwright hides scroll bars in headless mode; operators' browsers show them, and they take room.
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, ignore_default_args=["--hide-scrollbars"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, dashboard: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    yield page
    context.close()
