"""The estate page in headless Chromium on the real stack: the timeline's bars at the seeded times, the grid's
colours on the seeded days (a click opens the machine), the dialog's size bars, cumulative area and
week-over-week, and the CSV downloads (streamed through the dashboard, valid CSV with the seeded rows)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from playwright.sync_api import Page, expect

from dashboards.app.estate_shaping import OUTCOME_COLORS, day_factor, week_over_week_rows
from dashboards.auth import hash_password
from tests.conftest import OUTPUT_DIR
from tests.e2e.conftest import DASHBOARD_PORT, SCREENSHOTS
from tests.e2e.estate_seeds import GIB, MIB, SeededEstate, seed_estate
from tests.support.devstack import wait_until_live

PASSWORD = "estate page password"
# One column of a ColumnDataSource, read from the page's own Bokeh document (data may be a Map or an object).
COLUMN = """([name, field]) => {
  const m = Bokeh.documents[0].get_model_by_name(name);
  const d = m.data instanceof Map ? m.data.get(field) : m.data[field];
  return Array.from(d);
}"""
# Where on the page a grid cell is drawn: the plot's own scales map the (day, machine) factors to pixels.
CELL_AT = """([day, vm]) => {
  const plot = Bokeh.documents[0].get_model_by_name('grid-chart');
  const view = Bokeh.index.find_one(plot);
  const x = view.frame.x_scale.compute(plot.x_range.synthetic(day));  // (month, day of the month)
  const y = view.frame.y_scale.compute(plot.y_range.synthetic(vm));
  const box = view.canvas_view.el.getBoundingClientRect();
  return [box.left + x, box.top + y];
}"""

# The middle of a timeline bar on the page (x: milliseconds, y: the (repository, machine) factor).
BAR_AT = """([ms, row]) => {
  const plot = Bokeh.documents[0].get_model_by_name('timeline-chart');
  const view = Bokeh.index.find_one(plot);
  const x = view.frame.x_scale.compute(ms);
  const y = view.frame.y_scale.compute(plot.y_range.synthetic(row));
  const box = view.canvas_view.el.getBoundingClientRect();
  return [box.left + x, box.top + y];
}"""


@pytest.fixture(scope="module")
def estate(api: str, engine, settings) -> SeededEstate:
    return seed_estate(engine, settings)


def _column(page: Page, source: str, field: str) -> list:
    return page.evaluate(COLUMN, [source, field])


def _ms(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000


def _estate_page(page: Page, dashboard: str) -> None:
    page.goto(dashboard + "?view=estate")
    expect(page.locator(".bk-tab", has_text="Backup-window timeline")).to_be_visible()
    expect(page.locator(".timeline-info")).to_contain_text("jobs")


def _choose_repository(page: Page, estate: SeededEstate) -> None:
    page.locator(".timeline-repository select").select_option(estate.repository)
    ids = sorted(j["id"] for j in estate.timeline)
    page.wait_for_function(f"() => JSON.stringify(({COLUMN})(['timeline-bars', 'backup_id']).sort()) === "
                           f"JSON.stringify({ids!r})".replace("'", '"'))  # fmt: skip


def _grid_tab(page: Page, estate: SeededEstate) -> None:
    page.locator(".bk-tab", has_text="VM × day grid").click()
    # The first page first: a search typed while the tab still draws can miss its input.
    expect(page.locator(".grid-page")).to_contain_text("Machines 1–")
    page.locator(".grid-search input").fill(estate.prefix)
    try:
        expect(page.locator(".grid-page")).to_have_text("Machines 1–2 of 2")
    except AssertionError:
        print(
            "DEBUG",
            page.locator(".grid-search input").input_value(),
            page.locator("input").count(),
            sorted(set(_column(page, "grid-cells", "vm_name"))),
        )
        page.screenshot(path=SCREENSHOTS / "debug-grid.png", full_page=True)
        raise


def _csv(download) -> list[dict]:
    with open(download.path(), encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def test_the_timeline_draws_each_seeded_job_from_its_start_to_its_end(page: Page, dashboard: str, estate, viewer):
    _estate_page(page, dashboard)
    _choose_repository(page, estate)
    fields = [_column(page, "timeline-bars", f) for f in ("left", "right", "status", "y")]
    drawn = dict(zip(_column(page, "timeline-bars", "backup_id"), zip(*fields, strict=True), strict=True))
    for job in estate.timeline:
        left, right, status, y = drawn[job["id"]]
        assert (left, right, status) == (_ms(job["started_at"]), _ms(job["completed_at"]), job["status"])
        assert y == [estate.repository, job["vm_name"]]  # grouped: repository, then machine
    expect(page.locator(".timeline-info")).to_have_text("Machines 1–2 of 2 · 3 of 3 jobs")
    # The series below count the seeded jobs: three at once never, two at most (t1 and t2 overlap).
    running = _column(page, "timeline-series", "running")
    assert max(running) == 2 and len(running) == 288
    page.screenshot(path=SCREENSHOTS / "estate-timeline.png", full_page=True)

    failed = next(j for j in estate.timeline if j["status"] == "failed")
    middle = (_ms(failed["started_at"]) + _ms(failed["completed_at"])) / 2
    x, y = page.evaluate(BAR_AT, [middle, [estate.repository, failed["vm_name"]]])
    page.mouse.click(x, y)
    expect(page.locator(".bk-Dialog").get_by_text(f"Machine {failed['vm_name']}", exact=True)).to_be_visible()


def test_the_grid_colours_each_seeded_day_and_a_click_opens_the_machine(page: Page, dashboard: str, estate):
    _estate_page(page, dashboard)
    _grid_tab(page, estate)
    cells = zip(_column(page, "grid-cells", "vm_name"), _column(page, "grid-cells", "day"),
                _column(page, "grid-cells", "outcome"), _column(page, "grid-cells", "color"), strict=True)  # fmt: skip
    shown = {(vm, day): (outcome, color) for vm, day, outcome, color in cells}
    for days_ago, outcome in ((2, "success"), (3, "warning"), (4, "failed"), (5, "none"), (12, "none")):
        assert shown[(estate.busy, estate.day(days_ago))] == (outcome, OUTCOME_COLORS[outcome]), days_ago
    assert shown[(estate.other, estate.day(3))] == ("none", OUTCOME_COLORS["none"])
    page.screenshot(path=SCREENSHOTS / "estate-grid.png", full_page=True)

    x, y = page.evaluate(CELL_AT, [list(day_factor(estate.day(3))), estate.busy])
    page.mouse.click(x, y)
    expect(page.locator(".bk-Dialog")).to_be_visible()
    expect(page.locator(".bk-Dialog").get_by_text(f"Machine {estate.busy}", exact=True)).to_be_visible()
    expect(page.locator(".kpi-total")).to_have_text(str(len(estate.rows) + 2))


def test_the_dialog_shows_size_bars_the_cumulative_area_and_week_over_week(page: Page, dashboard: str, estate, viewer):
    _estate_page(page, dashboard)
    _grid_tab(page, estate)
    x, y = page.evaluate(CELL_AT, [list(day_factor(estate.day(2))), estate.busy])
    page.mouse.click(x, y)
    expect(page.locator(".bk-Dialog").get_by_text(f"Machine {estate.busy}", exact=True)).to_be_visible()

    page.locator(".bk-tab", has_text="Performance").click()
    jobs = sorted((j for j in estate.rows + estate.timeline if j["vm_name"] == estate.busy),
                  key=lambda j: j["created_at"])  # fmt: skip
    page.wait_for_function(f"() => ({COLUMN})(['size-bars', 'n']).length === {len(jobs)}")
    assert _column(page, "size-bars", "size_mb") == [j["bytes_transferred"] / MIB for j in jobs]
    assert _column(page, "size-bars", "status") == [j["status"] for j in jobs]
    cumulative = _column(page, "cumulative-bytes", "cumulative_gb")
    assert cumulative[-1] == pytest.approx(sum(j["bytes_transferred"] for j in jobs) / GIB)
    assert cumulative == sorted(cumulative)
    expect(page.locator(".bk-Dialog .bk-Figure").nth(2)).to_be_visible()
    page.locator(".bk-Dialog .bk-Figure").last.scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOTS / "dialog-size-bars.png")

    page.locator(".bk-tab", has_text="Analytics").click()
    week = viewer.get(f"/machines/{estate.busy}").json()["week_over_week"]
    assert week["figures"]["jobs"]["before"] == 2 and week["sentences"], week
    for row in week_over_week_rows(week):
        line = page.locator(f".wow-{row['name']}")
        expect(line.locator(".now")).to_have_text(row["now"])
        expect(line.locator(".before")).to_have_text(row["before"])
        expect(line.locator(".change")).to_have_text(row["change"])
    for sentence in week["sentences"]:
        expect(page.locator(".wow-sentences li", has_text=sentence)).to_have_text(sentence)
    page.screenshot(path=SCREENSHOTS / "dialog-week-over-week.png")


def test_csv_downloads_start_and_hold_the_seeded_rows(page: Page, dashboard: str, estate, viewer):
    _estate_page(page, dashboard)
    # The jobs of the last 24 hours: the timeline's three among them.
    page.locator(".estate-period").get_by_role("button", name="24 hours").click()
    with page.expect_download() as started:
        page.get_by_role("button", name="Jobs of the period (CSV)").click()
    assert started.value.suggested_filename == "sendense-jobs.csv"
    jobs = {r["backup_id"]: r for r in _csv(started.value) if r["backup_id"].startswith(estate.prefix)}
    assert sorted(jobs) == sorted(j["id"] for j in estate.timeline)
    for job in estate.timeline:
        assert (jobs[job["id"]]["vm_name"], jobs[job["id"]]["status"]) == (job["vm_name"], job["status"])
        assert int(jobs[job["id"]]["bytes_transferred"]) == job["bytes_transferred"]

    _choose_repository(page, estate)
    with page.expect_download() as started:
        page.get_by_role("button", name="Timeline (CSV)").click()
    bars = _csv(started.value)
    assert sorted(r["backup_id"] for r in bars) == sorted(j["id"] for j in estate.timeline)
    assert {r["repository_id"] for r in bars} == {estate.repository}

    _grid_tab(page, estate)
    with page.expect_download() as started:
        page.get_by_role("button", name="Grid (CSV)").click()
    with open(started.value.path(), encoding="utf-8", newline="") as file:
        table = list(csv.reader(file))
    grid = viewer.get("/reports/grid", params={"search": estate.prefix, "days": 30}).json()
    assert table[0] == ["vm_name", *grid["days"]]
    assert table[1:] == [[m["vm_name"], *m["cells"]] for m in grid["machines"]]
    assert table[1][grid["days"].index(estate.day(3)) + 1] == "warning"
    # The download became a download: no page loaded into its frame, so none could read as a refusal.
    frame = "() => document.getElementById('sendense-download-grid-csv').contentDocument.body.textContent"
    assert page.evaluate(frame) == ""
    expect(page.locator(".download-error")).to_have_count(0)


def test_a_refused_download_says_why_in_the_page(page: Page, dashboard_without_api: str):
    page.goto(dashboard_without_api + "?view=estate")
    page.get_by_role("button", name="Estate report (PDF)").click()
    expect(page.locator(".download-error")).to_contain_text("did not answer")
    page.screenshot(path=SCREENSHOTS / "estate-download-refused.png")


def test_the_download_route_checks_its_parameters(dashboard: str):
    answer = httpx.get(dashboard + "download/grid.csv", params={"days": "91"})
    assert answer.status_code == 400 and 'id="download-error"' in answer.text and "days" in answer.text
    answer = httpx.get(dashboard + "download/passwd.csv")
    assert answer.status_code == 400 and "no download named" in answer.text
    answer = httpx.get(dashboard + "download/estate.csv", params={"period": "24h"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    header = next(csv.reader(io.StringIO(answer.text)))
    assert header[:3] == ["backup_id", "vm_name", "repository_id"]


@pytest.fixture(scope="module")
def guarded(api: str, stack) -> Iterator[str]:
    """A dashboard that needs a login (`vic`, a viewer)."""
    port = DASHBOARD_PORT + 5
    env = {
        "SENDENSE_DASHBOARD_API_URL": api,
        "SENDENSE_DASHBOARD_TOKEN": stack.viewer_token,
        "SENDENSE_DASHBOARD_PORT": str(port),
        "SENDENSE_DASHBOARD_USERS": f"vic:viewer:{hash_password(PASSWORD)}",
        "SENDENSE_DASHBOARD_COOKIE_SECRET": "test-cookie-secret-estate-0123456789",
    }
    proc = stack.start_process("dashboard", log_path=OUTPUT_DIR / "dashboard-estate-login.log", env=env)
    url = f"http://127.0.0.1:{port}/"
    wait_until_live(f"{url}login", 30.0, proc)
    yield url
    stack.stop_process(proc)


def test_downloads_need_the_login_every_page_needs(guarded: str, page: Page, estate):
    refused = httpx.get(guarded + "download/estate.csv", params={"period": "24h"}, follow_redirects=False)
    assert refused.status_code == 403 and "sign in again" in refused.text
    assert estate.prefix not in refused.text
    page.goto(guarded + "login")
    page.fill("input[name=username]", "vic")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator(".slick-cell").first).to_be_visible()
    answer = page.request.get(guarded + "download/estate.csv?period=24h")  # the browser's cookie goes with it
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/csv")
    ids = {row["backup_id"] for row in csv.DictReader(io.StringIO(answer.text()))}
    assert {j["id"] for j in estate.timeline} <= ids
