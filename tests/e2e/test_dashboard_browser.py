"""The operators' dashboard in headless Debian Chromium against the real stack: table, dialog, tabs, charts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from dashboards.app.shaping import job_label
from tests.e2e.conftest import BROWSER_TIMEOUT_MS, SCREENSHOTS, SeededMachine
from tests.support.probes import update_body

# Reads a ColumnDataSource's length from the page's own Bokeh document (data may be a Map or an object).
SOURCE_LENGTH = """(name) => {
  const m = Bokeh.documents[0].get_model_by_name(name);
  const t = m.data instanceof Map ? m.data.get('t') : m.data.t;
  return t.length;
}"""


def _open_machine(page: Page, dashboard: str, vm_name: str) -> None:
    page.goto(dashboard)
    # The table shows a page of machines (most overdue first): find this one, as an operator would,
    # and wait for the search's answer before clicking (a click on the page before would be stale).
    page.locator("input.bk-input").fill(vm_name)
    expect(page.locator(".bk-Div", has_text="Machines 1–1 of 1")).to_be_visible()
    page.locator(".sendense-machines .slick-cell", has_text=vm_name).first.click()
    expect(page.locator(".bk-Dialog")).to_be_visible()
    for title in ("Summary", "Performance", "Analytics"):
        expect(page.locator(".bk-tab", has_text=title)).to_be_visible()


def _tab(page: Page, title: str) -> None:
    page.locator(".bk-tab", has_text=title).click()
    expect(page.locator(".bk-tab.bk-active", has_text=title)).to_be_visible()


SOURCE_VALUES = """(name) => {
  const m = Bokeh.documents[0].get_model_by_name(name);
  const t = m.data instanceof Map ? m.data.get('t') : m.data.t;
  return Array.from(t);
}"""


def _chart_points(page: Page) -> int:
    return page.evaluate(SOURCE_LENGTH, "speed-source")


def _select_job(page: Page, viewer, job_id: str) -> str:
    """Pick a job by its visible label, as an operator does; returns the label."""
    label = job_label(viewer.get(f"/backups/{job_id}").json())
    page.locator(".bk-Dialog select.bk-input").select_option(label=label)
    return label


def test_main_page_lists_machines_and_search_filters_them(page: Page, dashboard: str, seeded: SeededMachine):
    page.goto(dashboard)
    expect(page.locator(".slick-cell").first).to_be_visible()
    expect(page.locator(".bk-Div", has_text=re.compile(r"Machines 1–\d+ of \d+"))).to_be_visible()
    # Both seeded machines share the run's suffix: the API's search finds them on every page.
    page.locator("input.bk-input").fill(seeded.vm_name.rsplit("-", 1)[1])
    expect(page.locator(".sendense-machines .slick-cell", has_text=seeded.vm_name).first).to_be_visible()
    expect(page.locator(".sendense-machines .slick-cell", has_text=seeded.other_vm).first).to_be_visible()
    # The machine that never had a successful backup is out of its RPO and comes first.
    first_row = page.locator(".sendense-machines .slick-row").first
    expect(first_row.locator(".slick-cell").first).to_have_text(seeded.other_vm)
    expect(first_row).to_contain_text("out of RPO")
    page.locator("input.bk-input").fill(seeded.other_vm)
    expect(page.locator(".sendense-machines .slick-cell", has_text=seeded.vm_name)).to_have_count(0)
    expect(page.locator(".sendense-machines .slick-cell", has_text=seeded.other_vm).first).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "main-page.png")


def test_selecting_a_machine_opens_summary_and_closing_returns_to_table(
    page: Page, dashboard: str, seeded: SeededMachine, viewer
):
    _open_machine(page, dashboard, seeded.vm_name)
    machine = viewer.get(f"/machines/{seeded.vm_name}").json()
    expect(page.locator(".kpi-total")).to_have_text(str(machine["kpis"]["total_backups"]))
    expect(page.locator(".kpi-rate")).to_have_text(f"{machine['kpis']['success_rate']:.1f}%")
    expect(page.locator(".vm-info")).to_contain_text("CPUs: 4")
    # Four jobs in the history table (inside the dialog, not the main table nor the alerts).
    expect(page.locator(".bk-Dialog .sendense-history .slick-row")).to_have_count(4)
    page.screenshot(path=SCREENSHOTS / "tab-summary.png")
    expect(page.locator(".kpi-rpo")).to_have_text("within RPO")
    page.locator(".bk-Dialog .bk-close").click()
    expect(page.locator(".bk-Dialog")).to_have_count(0)
    expect(page.locator(".sendense-machines .slick-cell", has_text=seeded.vm_name).first).to_be_visible()


def test_performance_tab_shows_each_jobs_own_chart_and_figures(
    page: Page, dashboard: str, seeded: SeededMachine, viewer
):
    _open_machine(page, dashboard, seeded.vm_name)
    _tab(page, "Performance")
    labels = page.locator(".bk-Dialog select.bk-input option").all_inner_texts()
    assert len(labels) == 4 and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d – \w+", t) for t in labels)
    assert labels[-1].endswith("– full"), "newest first: the completed full backup was created first"

    for job_id in (seeded.completed, seeded.failed):
        metrics = viewer.get(f"/telemetry/history/{job_id}").json()["performance_metrics"]
        _select_job(page, viewer, job_id)
        expect(page.locator(".perf-peak")).to_have_text(f"{metrics['peak_speed_mbps']:.2f} MB/s")
        expect(page.locator(".perf-avg")).to_have_text(f"{metrics['avg_speed_mbps']:.2f} MB/s")
        page.wait_for_function(
            f"() => ({SOURCE_LENGTH})('speed-source') === {len(metrics['chart_data'])}", timeout=BROWSER_TIMEOUT_MS
        )
        expect(page.locator(".bk-Figure").first).to_be_visible()
        page.screenshot(path=SCREENSHOTS / f"tab-performance-{job_id.rsplit('-', 1)[-1]}.png")

    _select_job(page, viewer, seeded.no_telemetry)
    expect(page.get_by_text("No telemetry data available for this job")).to_be_visible()
    expect(page.locator(".perf-peak")).to_have_count(0)
    assert _chart_points(page) == 0

    # Tabs keep their state: the selected job is still selected after a round trip through Analytics.
    label = _select_job(page, viewer, seeded.completed)
    expect(page.locator(".perf-peak")).to_be_visible()
    _tab(page, "Analytics")
    _tab(page, "Performance")
    expect(page.locator(".bk-Dialog select.bk-input option:checked")).to_have_text(label)


def test_running_job_chart_gains_points_while_page_stays(page: Page, dashboard: str, seeded: SeededMachine, viewer):
    _open_machine(page, dashboard, seeded.vm_name)
    _tab(page, "Performance")
    _select_job(page, viewer, seeded.running)
    expect(page.get_by_text(re.compile(r"Job is running — [\d.]+ % done"))).to_be_visible()
    page.wait_for_function(f"() => ({SOURCE_LENGTH})('speed-source') > 0", timeout=BROWSER_TIMEOUT_MS)
    before = _chart_points(page)
    # Refreshes every 3 s and the feeder adds a point every 0.5 s: a few refreshes must add points.
    page.wait_for_function(f"() => ({SOURCE_LENGTH})('speed-source') > {before}", timeout=BROWSER_TIMEOUT_MS)
    # Refreshes ask only for the points after the last answer's: what they appended is the API's whole chart.
    drawn = page.evaluate(SOURCE_VALUES, "speed-source")
    whole = [p["t"] for p in viewer.get(f"/telemetry/history/{seeded.running}").json()["chart_data"]]
    assert len(drawn) > before and whole[: len(drawn)] == drawn
    page.screenshot(path=SCREENSHOTS / "tab-performance-running.png")


def test_analytics_donut_centre_shows_the_api_success_rate(page: Page, dashboard: str, seeded: SeededMachine, viewer):
    rate = viewer.get(f"/machines/{seeded.vm_name}").json()["kpis"]["success_rate"]
    _open_machine(page, dashboard, seeded.vm_name)
    _tab(page, "Analytics")
    expect(page.locator(".an-rate")).to_have_text(f"{rate:.1f}%")
    centre = page.evaluate("() => Bokeh.documents[0].get_model_by_name('donut-centre').text")
    assert centre == f"{rate:.1f}%"
    page.screenshot(path=SCREENSHOTS / "tab-analytics.png")


TREND_STATUSES = """() => {
  const m = Bokeh.documents[0].get_model_by_name('trend-source');
  return Array.from(m.data instanceof Map ? m.data.get('status') : m.data.status);
}"""


def test_analytics_trends_leave_out_running_and_pending_jobs_and_say_so(
    page: Page, dashboard: str, seeded: SeededMachine, viewer
):
    trend = viewer.get(f"/machines/{seeded.vm_name}").json()["trend"]
    assert {"running", "pending"} <= {j["status"] for j in trend}, "the API's trend has the unfinished jobs"
    _open_machine(page, dashboard, seeded.vm_name)
    _tab(page, "Analytics")
    expect(page.get_by_text("Not in the trends until finished: 1 running job and 1 pending job.")).to_be_visible()
    # Only the finished runs are drawn, oldest first: the running job's partial size is not a point.
    assert page.evaluate(TREND_STATUSES) == ["completed", "failed"]
    page.screenshot(path=SCREENSHOTS / "tab-analytics-trends.png")


def test_selected_jobs_telemetry_downloads_as_csv(page: Page, dashboard: str, seeded: SeededMachine, viewer):
    chart = viewer.get(f"/telemetry/history/{seeded.completed}").json()["performance_metrics"]["chart_data"]
    _open_machine(page, dashboard, seeded.vm_name)
    _tab(page, "Performance")
    _select_job(page, viewer, seeded.completed)
    page.wait_for_function(f"() => ({SOURCE_LENGTH})('speed-source') === {len(chart)}", timeout=BROWSER_TIMEOUT_MS)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download telemetry (CSV)").click()
    download = info.value
    assert download.suggested_filename == f"{seeded.completed}-telemetry.csv"
    lines = download.path().read_text(encoding="utf-8").splitlines()
    assert lines[0] == "t_seconds,time,speed_mbps,progress_percent,phase"
    assert len(lines) == 1 + len(chart)


def test_running_job_switches_to_rolled_up_data_when_it_finishes(
    page: Page, dashboard: str, agent, viewer, scheduler_jobs, unique
):
    vm = f"dash-finish-{unique}"
    created = agent.post("/backups", json={"vm_name": vm, "backup_type": "full", "repository_id": "repo-dash"})
    job_id = created.json()["backup_id"]
    for i in range(1, 6):
        assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, total=10)).status_code == 202
    _open_machine(page, dashboard, vm)
    _tab(page, "Performance")
    expect(page.get_by_text(re.compile(r"Job is running"))).to_be_visible()

    final = agent.post(f"/telemetry/backup/{job_id}", json=update_body(10, total=10, status="completed"))
    assert final.status_code == 200
    scheduler_jobs.roll_up()
    assert viewer.get(f"/telemetry/history/{job_id}").json()["data_source"] == "rolled_up"
    # Without a reload: the next 3-second refreshes pick the rolled-up summary up.
    expect(page.get_by_text(re.compile(r"Job completed; rolled-up telemetry"))).to_be_visible(
        timeout=BROWSER_TIMEOUT_MS
    )
    expect(page.get_by_text(re.compile(r"Job is running"))).to_have_count(0)


def test_api_outage_is_a_readable_message_not_a_blank_page(browser, dashboard_without_api: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    try:
        page.goto(dashboard_without_api)
        # The machines table says it, and the alerts panel says it for its part.
        for says in (r"^The API", r"^Alerts: The API"):
            message = page.get_by_text(re.compile(says + r" at http://127.0.0.1:9 did not answer .*sendense api"))
            expect(message).to_be_visible()
        assert "Traceback" not in page.content()
        page.screenshot(path=SCREENSHOTS / "api-down.png")
    finally:
        context.close()


def test_the_dialog_title_shows_a_vm_name_with_markup_characters_as_typed(page: Page, dashboard: str, agent, unique):
    vm_name = f"db <eu> & co {unique}"
    body = {"vm_name": vm_name, "backup_type": "full", "repository_id": "repo-dash"}
    assert agent.post("/backups", json=body).status_code == 201
    _open_machine(page, dashboard, vm_name)
    expect(page.locator(".bk-Dialog")).to_contain_text(f"Machine {vm_name}")
    expect(page.locator(".bk-Dialog")).not_to_contain_text("&lt;")


DISK_CHART = """() => {
  const m = Bokeh.documents[0].get_model_by_name('disk-source');
  const labels = m.data instanceof Map ? m.data.get('label') : m.data.label;
  const chart = Bokeh.documents[0].get_model_by_name('disk-chart');
  return chart.visible && labels.length === 2 ? labels.join(',') : '';
}"""


DISK_XS = """() => {
  const m = Bokeh.documents[0].get_model_by_name('disk-source');
  const xs = m.data instanceof Map ? m.data.get('xs') : m.data.xs;
  return Array.from(xs, (line) => Array.from(line));
}"""
DISK_LENGTHS = f"() => ({DISK_XS})().map((line) => line.length).join(',')"


def test_a_multi_disk_job_shows_one_speed_curve_per_disk(page: Page, dashboard: str, agent, unique):
    vm_name = f"two-disks-{unique}"
    body = {"vm_name": vm_name, "backup_type": "full", "repository_id": "repo-dash"}
    body["disks"] = [{"disk_index": 0, "size_bytes": 1000}, {"disk_index": 1, "size_bytes": 1000}]
    job_id = agent.post("/backups", json=body).json()["backup_id"]
    # Five seconds apart (a live read buckets a young job's curves by a few seconds).
    start = datetime.now(UTC)

    def update(i: int, **extra) -> dict:
        return update_body(i, timestamp=(start + timedelta(seconds=5 * i)).isoformat(), **extra)

    for i in range(1, 6):
        for disk in (0, 1):
            assert agent.post(f"/telemetry/backup/{job_id}", json=update(i, disk_index=disk)).status_code == 202
        assert agent.post(f"/telemetry/backup/{job_id}", json=update(i)).status_code == 202
    _open_machine(page, dashboard, vm_name)
    _tab(page, "Performance")
    page.wait_for_function(DISK_CHART)
    assert page.evaluate(DISK_CHART) == "Disk 0,Disk 1"
    page.screenshot(path=SCREENSHOTS / "tab-performance-disks.png")
    # Live: a refresh asks for each disk's new points only and extends the line of the disk that has them.
    assert page.evaluate(DISK_LENGTHS) == "5,5"
    for i in (6, 7):
        assert agent.post(f"/telemetry/backup/{job_id}", json=update(i, disk_index=1)).status_code == 202
    page.wait_for_function(f"() => ({DISK_LENGTHS})() === '5,7'")
    whole = agent.get(f"/telemetry/history/{job_id}/disks").json()
    assert [len(d["chart_data"]) for d in whole["disks"]] == [5, 7]
    drawn = page.evaluate(DISK_XS)
    assert drawn == [[p["t"] for p in d["chart_data"]] for d in whole["disks"]]
