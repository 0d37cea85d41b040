"""A click on a machines-table header sorts all machines on the server, page after page, and shows the order."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from dashboards.app.views.machines import PAGE_SIZE
from tests.e2e.conftest import BROWSER_TIMEOUT_MS, SCREENSHOTS
from tests.support.devstack import DevStack

# The names on the page shown, read from the page's own Bokeh document (the grid draws only visible rows).
SHOWN = """() => {
  const m = Bokeh.documents[0].get_model_by_name('machines-source');
  return Array.from(m.data instanceof Map ? m.data.get('vm_name') : m.data.vm_name);
}"""
SHOWS = f"(names) => JSON.stringify(({SHOWN})()) === JSON.stringify(names)"
# The VM of each row the grid has drawn (only those in sight), top to bottom: what the operator sees.
DRAWN = """rows => rows
  .map(r => [parseFloat(r.style.top), r.querySelector('.slick-cell').textContent])
  .sort((a, b) => a[0] - b[0]).map(([_top, name]) => name)"""
MACHINES = PAGE_SIZE + 5  # two pages
BUSY, BUSIER = 50, 104  # the machines with 2 and 3 jobs; the others have one


@pytest.fixture(scope="module")
def sort_machines(api: str, stack: DevStack) -> Iterator[tuple[str, list[str]]]:
    """MACHINES machines named prefix-000 … prefix-104, each with one job, and two of them busier."""
    prefix = f"sort-{int(time.time() * 1000) % 10**9}"
    names = [f"{prefix}-{i:03d}" for i in range(MACHINES)]
    headers = {"Authorization": f"Bearer {stack.agent_token}"}
    with httpx.Client(base_url=f"{api}/api/v1", headers=headers, timeout=30) as client:
        jobs = [*names, names[BUSY], names[BUSIER], names[BUSIER]]
        for vm in jobs:
            body = {"vm_name": vm, "backup_type": "full", "repository_id": "repo-sort"}
            assert client.post("/backups", json=body).status_code == 201
    yield prefix, names


def _header(page: Page, title: str):
    # Playwright hands the pattern to the browser as /…/: a "/" in a title must be escaped for it too.
    pattern = re.escape(title).replace("/", r"\/")
    return page.get_by_role("button", name=re.compile(rf"^{pattern}( [▲▼])?$"))


def _expect_page(page: Page, names: list[str]) -> None:
    """The page holds exactly `names`, in this order, and the grid draws them (not the rows of before)."""
    try:
        page.wait_for_function(SHOWS, arg=names, timeout=BROWSER_TIMEOUT_MS)
    except PlaywrightTimeout:
        shown = page.evaluate(SHOWN)
        raise AssertionError(
            f"page shows {shown[:3]} … {shown[-3:]} ({len(shown)}), expected {names[:3]} … {names[-3:]}"
        ) from None
    expect(page.locator(".sendense-machines .slick-row").first).to_be_visible()
    drawn = page.locator(".sendense-machines .slick-row").evaluate_all(DRAWN)
    assert len(drawn) >= min(len(names), 10), drawn
    assert drawn == names[: len(drawn)], f"the grid draws {drawn[:3]} …, the page holds {names[:3]} …"


def test_a_header_click_sorts_every_page_on_the_server_and_a_second_click_reverses_it(
    page: Page, dashboard: str, sort_machines
):
    prefix, names = sort_machines
    page.goto(dashboard)
    page.locator("input.bk-input").fill(prefix)
    expect(page.locator(".bk-Div", has_text=f"Machines 1–{PAGE_SIZE} of {MACHINES}")).to_be_visible()
    expect(_header(page, "RPO")).to_have_text("RPO ▼")  # the default: most overdue first

    _header(page, "VM").click()
    expect(_header(page, "VM")).to_have_text("VM ▲")
    expect(_header(page, "RPO")).to_have_text("RPO")
    expect(page.locator("select.bk-input option:checked").first).to_have_text("VM name: A → Z")
    _expect_page(page, names[:PAGE_SIZE])

    _header(page, "VM").click()
    expect(_header(page, "VM")).to_have_text("VM ▼")
    descending = names[::-1]
    # The API's order, not this page's rows reversed: the first page now starts with the last machine.
    _expect_page(page, descending[:PAGE_SIZE])
    page.screenshot(path=SCREENSHOTS / "sorted-by-vm-descending.png")
    page.get_by_role("button", name="Next ▶").click()
    expect(page.locator(".bk-Div", has_text=f"Machines {PAGE_SIZE + 1}–{MACHINES} of {MACHINES}")).to_be_visible()
    _expect_page(page, descending[PAGE_SIZE:])
    expect(_header(page, "VM")).to_have_text("VM ▼")

    # Another header: back to the first page, in that column's first order (most jobs first; ties by name).
    _header(page, "Backups").click()
    expect(_header(page, "Backups")).to_have_text("Backups ▼")
    expect(_header(page, "VM")).to_have_text("VM")
    by_jobs = [names[BUSIER], names[BUSY]] + [n for i, n in enumerate(names) if i not in (BUSY, BUSIER)]
    _expect_page(page, by_jobs[:PAGE_SIZE])  # the busiest machine comes from what was the second page
    _header(page, "Backups").click()
    expect(_header(page, "Backups")).to_have_text("Backups ▲")
    fewest_first = [n for i, n in enumerate(names) if i not in (BUSY, BUSIER)] + [names[BUSY], names[BUSIER]]
    _expect_page(page, fewest_first[:PAGE_SIZE])
    page.get_by_role("button", name="Next ▶").click()
    _expect_page(page, fewest_first[PAGE_SIZE:])
    page.screenshot(path=SCREENSHOTS / "sorted-by-backups-ascending-page-2.png")


def test_columns_the_api_cannot_sort_by_are_not_clickable_and_say_so(page: Page, dashboard: str, sort_machines):
    page.goto(dashboard)
    expect(page.locator(".slick-cell").first).to_be_visible()
    for title in ("Alerts", "Repository", "Age / RPO", "Last job type", "Last status", "Size (MB)"):
        expect(_header(page, title)).to_be_disabled()
    for title in ("VM", "RPO", "Risk", "Last job (UTC)", "Success %", "Backups"):
        expect(_header(page, title)).to_be_enabled()
    # Each header's tooltip says what it does (on the header's own element, around its button).
    expect(page.locator(".bk-Button[title='The API cannot sort by this column']")).to_have_count(6)
    expect(page.locator(".bk-Button[title^='Click to sort by ']")).to_have_count(5)
    expect(
        page.locator(".bk-Button[title='Sorted by RPO, most overdue first; click for least overdue first']")
    ).to_have_count(1)
