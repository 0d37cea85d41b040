"""Everything the dashboard draws can be seen whole: every chart of every tab at 1280 × 800 and up, no cut cell."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import BROWSER_TIMEOUT_MS, SCREENSHOTS
from tests.support.devstack import DevStack
from tests.support.probes import update_body

WINDOWS = [(1280, 800), (1400, 1000), (1920, 1080)]
# What each tab draws, by Bokeh model name, top to bottom.
TABS = {
    "Summary": ["vm-info", "summary-kpis", "summary-risk", "machine-alerts", "history-table"],
    "Performance": ["job-select", "perf-figures", "speed-chart", "disk-chart"],
    "Analytics": ["analytics-totals", "success-donut", "trend-size_mb", "trend-duration_min"],
}
LONG_REPOSITORY = "repo-local-1759780872"  # the job sheet's own example
TERABYTES_5 = 5 * 1024**4

# Scrolls a model's element into view inside the dialog, then measures it against the dialog's
# scrolling box (what is outside it is clipped) and the window.
REACH = """(name) => {
  const model = Bokeh.documents[0].get_model_by_name(name);
  const view = Bokeh.index.find_one(model);
  if (view == null || !model.visible) return null;
  view.el.scrollIntoView({block: 'nearest', inline: 'nearest'});
  const box = document.querySelector('.bk-Dialog').shadowRoot.querySelector('.bk-content');
  const b = box.getBoundingClientRect();
  const r = view.el.getBoundingClientRect();
  return {
    el: [r.left, r.top, r.right, r.bottom],
    box: [b.left + box.clientLeft, b.top + box.clientTop, b.left + box.clientLeft + box.clientWidth,
          b.top + box.clientTop + box.clientHeight],
    window: [0, 0, document.documentElement.clientWidth, document.documentElement.clientHeight],
  };
}"""
# Cells whose text is wider than the room inside them: cut (with an ellipsis, or not). Measured in
# fractions of a pixel from the text's own layout: scrollWidth rounds, and a text 0.6 px too wide
# already loses four characters to the ellipsis.
CUT = """els => els.map(e => {
  const cs = getComputedStyle(e);
  const sides = ['borderLeftWidth', 'borderRightWidth', 'paddingLeft', 'paddingRight'];
  const room = e.getBoundingClientRect().width - sides.reduce((sum, side) => sum + parseFloat(cs[side]), 0);
  const texts = document.createTreeWalker(e, NodeFilter.SHOW_TEXT), range = document.createRange();
  let width = 0;
  while (texts.nextNode()) {
    range.selectNodeContents(texts.currentNode);
    width = Math.max(width, range.getBoundingClientRect().width);
  }
  return [e.textContent, Math.round(width * 10) / 10, Math.round(room * 10) / 10];
}).filter(([_text, width, room]) => width > room)"""


@dataclass
class WideMachine:
    """A machine whose values are the longest the tables show, and one whose last job is the longest."""

    vm_name: str
    other_vm: str
    search: str


@pytest.fixture(scope="module")
def wide(api: str, stack: DevStack) -> Iterator[WideMachine]:
    token = f"{int(time.time() * 1000) % 10**9}"
    vm, other = f"wide-values-{token}", f"wide-last-{token}"
    headers = {"Authorization": f"Bearer {stack.agent_token}"}
    client = httpx.Client(base_url=f"{api}/api/v1", headers=headers, timeout=30)

    def create(vm_name: str, backup_type: str, job_type: str, disks: int = 0) -> str:
        time.sleep(1.0)  # one second apart: the job selector's labels are to the second
        body = {"vm_name": vm_name, "backup_type": backup_type, "job_type": job_type, "repository_id": LONG_REPOSITORY}
        if disks:
            body["disks"] = [{"disk_index": d, "size_bytes": TERABYTES_5} for d in range(disks)]
        response = client.post("/backups", json=body)
        assert response.status_code == 201, response.text
        return response.json()["backup_id"]

    def post(job_id: str, job_type: str, body: dict) -> None:
        response = client.post(f"/telemetry/{job_type}/{job_id}", json=body)
        assert response.status_code in (200, 202), response.text

    # A twelve-hour differential replication of 5 TB, completed; then a cancelled incremental backup.
    replication = create(vm, "differential", "replication")
    start = datetime.now(UTC) - timedelta(hours=12, minutes=2, seconds=3)
    for i, status, at in ((1, "running", 0), (2, "running", 3600), (40, "completed", 43_323)):
        body = update_body(i, total=40, status=status, timestamp=(start + timedelta(seconds=at)).isoformat())
        body["bytes_transferred"], body["total_bytes"] = TERABYTES_5 * i // 40, TERABYTES_5
        post(replication, "replication", body)
    cancelled = create(vm, "incremental", "backup")
    post(cancelled, "backup", update_body(1))
    post(cancelled, "backup", update_body(2, status="cancelled"))
    # Newest: a running two-disk backup, so that the Performance tab shows the per-disk chart; its
    # updates five seconds apart (stamped by the agent), so that the charts look like a real job's.
    running = create(vm, "full", "backup", disks=2)
    begun = datetime.now(UTC) - timedelta(minutes=2)
    for i in range(1, 20):
        at = (begun + timedelta(seconds=5 * i)).isoformat()
        for disk in (0, 1):
            post(running, "backup", update_body(i + 3 * disk, disk_index=disk, timestamp=at))
        post(running, "backup", update_body(i, timestamp=at))
    # The other machine's last job is the longest job type there is, cancelled, 5 TB in.
    last = create(other, "differential", "replication")
    body = update_body(3, status="cancelled")
    body["bytes_transferred"], body["total_bytes"] = TERABYTES_5, TERABYTES_5
    post(last, "replication", body)
    client.close()
    yield WideMachine(vm, other, token)


def _window(browser, size: tuple[int, int]):
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    return context, page


def _open(page: Page, dashboard: str, vm_name: str) -> None:
    page.goto(dashboard)
    page.locator("input.bk-input").fill(vm_name)
    expect(page.locator(".bk-Div", has_text="Machines 1–1 of 1")).to_be_visible()
    page.locator(".sendense-machines .slick-cell", has_text=vm_name).first.click()
    expect(page.locator(".bk-Dialog")).to_be_visible()


def _inside(inner: list[float], outer: list[float]) -> bool:
    left, top, right, bottom = inner
    return left >= outer[0] - 0.5 and top >= outer[1] - 0.5 and right <= outer[2] + 0.5 and bottom <= outer[3] + 0.5


@pytest.mark.parametrize("size", WINDOWS, ids=[f"{w}x{h}" for w, h in WINDOWS])
def test_every_chart_of_every_tab_can_be_scrolled_into_full_view(
    browser, dashboard: str, wide: WideMachine, size: tuple[int, int]
):
    context, page = _window(browser, size)
    try:
        _open(page, dashboard, wide.vm_name)
        for tab, names in TABS.items():
            page.locator(".bk-tab", has_text=tab).click()
            expect(page.locator(".bk-tab.bk-active", has_text=tab)).to_be_visible()
            if tab == "Performance":
                page.wait_for_function(
                    "() => Bokeh.documents[0].get_model_by_name('disk-chart').visible", timeout=BROWSER_TIMEOUT_MS
                )
            for name in names:
                found = page.evaluate(REACH, name)
                assert found is not None, f"{tab}: {name} is not drawn"
                assert _inside(found["el"], found["box"]), f"{tab}: {name} at {found['el']} is cut by the dialog"
                assert _inside(found["el"], found["window"]), f"{tab}: {name} at {found['el']} is outside the window"
            # Scrolled to the tab's last chart: what an operator sees at the bottom of the tab.
            page.screenshot(path=SCREENSHOTS / f"layout-{tab.lower()}-{size[0]}x{size[1]}.png")
    finally:
        context.close()


def test_no_cell_of_the_machines_table_is_cut(browser, dashboard: str, wide: WideMachine):
    context, page = _window(browser, WINDOWS[0])
    try:
        page.goto(dashboard)
        page.locator("input.bk-input").fill(wide.search)
        expect(page.locator(".bk-Div", has_text="Machines 1–2 of 2")).to_be_visible()
        row = page.locator(".sendense-machines .slick-row", has_text=wide.other_vm)
        for value in ("differential replication", "cancelled", "5,242,880.0", LONG_REPOSITORY):
            expect(row).to_contain_text(value)
        expect(page.locator(".sendense-machines .slick-row", has_text=wide.vm_name)).to_contain_text("100.0")
        # Headers with their arrows are at their widest.
        page.get_by_role("button", name="Success %").click()
        expect(page.get_by_role("button", name="Success % ▲")).to_be_visible()
        page.get_by_role("button", name="Risk").click()
        expect(page.get_by_role("button", name="Risk ▼")).to_be_visible()
        page.get_by_role("button", name="Last job (UTC)").click()
        expect(page.get_by_role("button", name="Last job (UTC) ▼")).to_be_visible()
        assert page.locator(".sendense-machines .slick-cell").evaluate_all(CUT) == []
        assert page.locator(".bk-btn").evaluate_all(CUT) == []
        # The whole table fits the window: nothing to scroll sideways for.
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=SCREENSHOTS / "machines-table-1280x800.png")
    finally:
        context.close()


def test_no_cell_of_the_backup_history_is_cut(browser, dashboard: str, wide: WideMachine):
    context, page = _window(browser, WINDOWS[0])
    try:
        _open(page, dashboard, wide.vm_name)
        history = page.locator(".sendense-history .slick-row")
        expect(history).to_have_count(3)
        for value in ("differential", "cancelled", "5,242,880.0", re.compile(r"^\d+h \d\dm \d\ds$")):
            expect(page.locator(".sendense-history .slick-cell", has_text=value).first).to_be_visible()
        assert page.locator(".sendense-history .slick-cell").evaluate_all(CUT) == []
        assert page.locator(".sendense-history .slick-header-column").evaluate_all(CUT) == []
        page.screenshot(path=SCREENSHOTS / "history-table-1280x800.png")
    finally:
        context.close()
