"""Alerts in the dashboard: the panel (firing first, severity colours), the tab's title, each alert opening its
machine, the machines' alert column, and operators acknowledging and silencing in their own name (viewers not)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from bokeh.util.token import get_token_payload
from playwright.sync_api import Page, expect

from dashboards.app.alert_shaping import title_text
from dashboards.auth import hash_password
from tests.conftest import OUTPUT_DIR
from tests.e2e.alert_seeds import SeededAlerts, seed_alerts
from tests.e2e.conftest import BROWSER_TIMEOUT_MS, DASHBOARD_PORT, SCREENSHOTS
from tests.support.devstack import DevStack, wait_until_live

PASSWORD = "correct horse battery"
ROLES_PORT = DASHBOARD_PORT + 5
# The severity badges' backgrounds as the browser computes them: red, amber, blue.
RED, AMBER, BLUE = "rgb(198, 40, 40)", "rgb(249, 168, 37)", "rgb(21, 101, 192)"
WINDOWS = [(1280, 800), (1400, 1000)]

# The panel's rows as the page's own Bokeh document holds them (the grid draws only those in sight).
PANEL = """(name) => {
  const doc = window.Bokeh && Bokeh.documents[0];
  const m = doc && doc.get_model_by_name(name);
  if (!m) return {id: [], state: [], vm: [], severity: []};
  const get = (k) => Array.from(m.data instanceof Map ? m.data.get(k) : m.data[k]);
  return {id: get('id'), state: get('state'), vm: get('vm_name'), severity: get('severity')};
}"""
# Scrolls the panel's grid so that the row of alert `id` is drawn.
SCROLL_TO = """([name, id]) => {
  const table = Bokeh.documents[0].get_model_by_name(name);
  const data = table.source.data instanceof Map ? table.source.data.get('id') : table.source.data.id;
  Bokeh.index.find_one(table).grid.scrollRowToTop(Array.from(data).indexOf(id));
}"""


@pytest.fixture(scope="module")
def alerts(api: str, stack: DevStack, engine, settings) -> Iterator[SeededAlerts]:
    yield from seed_alerts(api, stack, engine, settings)


@pytest.fixture(scope="module")
def with_roles(api: str, stack: DevStack) -> Iterator[str]:
    """A dashboard with an operator (jane) and a viewer (victor), and the operator token to act with."""
    stored = hash_password(PASSWORD)
    env = {
        "SENDENSE_DASHBOARD_API_URL": api,
        "SENDENSE_DASHBOARD_TOKEN": stack.viewer_token,
        "SENDENSE_DASHBOARD_OPERATOR_TOKEN": stack.operator_token,
        "SENDENSE_DASHBOARD_PORT": str(ROLES_PORT),
        # victor in the form from before the roles: name:hash is a viewer.
        "SENDENSE_DASHBOARD_USERS": f"jane:operator:{stored},victor:{stored}",
        "SENDENSE_DASHBOARD_COOKIE_SECRET": "test-cookie-secret-roles-0123456789",
    }
    proc = stack.start_process("dashboard", log_path=OUTPUT_DIR / "dashboard-roles.log", env=env)
    url = f"http://127.0.0.1:{ROLES_PORT}/"
    wait_until_live(f"{url}login", 30.0, proc)
    yield url
    stack.stop_process(proc)


def _window(browser, size: tuple[int, int]):
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    return context, page


def _login(page: Page, url: str, name: str) -> None:
    page.goto(url)
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator(".bk-Div", has_text=f"{name} (")).to_be_visible()


def _panel_row(page: Page, alert_id: int, text: str):
    """The panel's row of `alert_id` (which shows `text`), scrolled into sight."""
    page.wait_for_function(f"(id) => ({PANEL})('alerts-source').id.includes(id)", arg=alert_id)
    page.evaluate(SCROLL_TO, ["alerts-table", alert_id])
    row = page.locator(".sendense-alerts .slick-row", has_text=text)
    expect(row).to_have_count(1)
    return row


def _filter(page: Page, label: str) -> None:
    """Show only `label`'s alerts, and wait until the panel holds them (not the rows of before)."""
    page.locator(".bk-RadioButtonGroup .bk-btn", has_text=label).click()
    expect(page.locator(".bk-RadioButtonGroup .bk-btn.bk-active")).to_have_text(label)
    key, value = ("state", "resolved") if label == "Resolved" else ("severity", label.upper())
    page.wait_for_function(
        f"([key, value]) => {{ const rows = ({PANEL})('alerts-source')[key];"
        " return rows.length > 0 && rows.every(v => v === value); }",
        arg=[key, value],
    )


def _open_from_panel(page: Page, alert_id: int, text: str) -> None:
    _panel_row(page, alert_id, text).locator(".slick-cell").nth(2).click()


def test_the_panel_lists_firing_alerts_first_in_their_severitys_colour(
    browser, dashboard: str, alerts: SeededAlerts, viewer
):
    for size in WINDOWS:
        context, page = _window(browser, size)
        try:
            page.goto(dashboard)
            # The panel holds the API's first page, in its order: every firing alert before any resolved one.
            expected = [a["id"] for a in viewer.get("/alerts", params={"limit": 50}).json()["alerts"]]
            page.wait_for_function(
                f"(ids) => JSON.stringify(({PANEL})('alerts-source').id) === JSON.stringify(ids)",
                arg=expected,
                timeout=BROWSER_TIMEOUT_MS,
            )
            states = page.evaluate(PANEL, "alerts-source")["state"]
            assert states == sorted(states, key=lambda s: s != "firing"), states
            critical = _panel_row(page, alerts.ids[alerts.critical_vm], alerts.critical_vm)
            expect(critical).to_contain_text("CRITICAL")
            expect(critical).to_contain_text("Job failed")
            expect(critical).to_contain_text("NBD server reset the connection")
            expect(critical).to_contain_text(re.compile(r"for (<1m|\d+m)"))
            expect(critical.locator(".al-sev")).to_have_css("background-color", RED)
            pipeline = _panel_row(page, alerts.ids["pipeline"], "Pipeline unhealthy")
            expect(pipeline).to_contain_text("pipeline")
            page.screenshot(path=SCREENSHOTS / f"alerts-panel-{size[0]}x{size[1]}.png")
            # Each severity on its own, and the resolved ones.
            for label, vm, colour, state in (
                ("Warning", alerts.warning_vm, AMBER, "firing"),
                ("Info", alerts.info_vm, BLUE, "firing"),
                ("Resolved", alerts.resolved_vm, RED, "resolved"),
            ):
                _filter(page, label)
                row = _panel_row(page, alerts.ids[vm], vm)
                expect(row).to_contain_text(state)
                expect(row.locator(".al-sev")).to_have_css("background-color", colour)
                shown = page.evaluate(PANEL, "alerts-source")["state"]
                assert set(shown) == {state} if label == "Resolved" else shown[0] == "firing"
            expect(row).to_contain_text(re.compile(r"resolved (<1m|\d+m) ago"))
            page.screenshot(path=SCREENSHOTS / f"alerts-panel-resolved-{size[0]}x{size[1]}.png")
            # Nothing to scroll sideways for, and at 1280 × 800 nothing to scroll down for either.
            assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
            if size == WINDOWS[0]:
                assert page.evaluate("() => document.documentElement.scrollHeight <= window.innerHeight")
        finally:
            context.close()


def test_the_tab_title_counts_the_firing_alerts_per_severity(page: Page, dashboard: str, alerts, viewer):
    firing = viewer.get("/alerts", params={"limit": 1}).json()["firing"]
    assert min(firing.values()) >= 1, firing  # each severity has a seeded alert
    page.goto(dashboard)
    expect(page).to_have_title(title_text(firing))
    expect(page).to_have_title(re.compile(r"^\(\d+ critical, \d+ warning, \d+ info\) Sendense Telemetry$"))


def test_an_alert_opens_its_machines_dialog_and_a_pipeline_alert_opens_on_its_own(
    page: Page, dashboard: str, alerts: SeededAlerts
):
    page.goto(dashboard)
    alert_id = alerts.ids[alerts.critical_vm]
    _open_from_panel(page, alert_id, alerts.critical_vm)
    dialog = page.locator(".bk-Dialog")
    expect(dialog).to_contain_text(f"Machine {alerts.critical_vm}")
    expect(page.locator(".bk-tab.bk-active")).to_have_text("Summary")
    # The machine's alerts, this one chosen: its story, and (no login here) why there is nothing to press.
    expect(page.locator(".machine-alerts-text")).to_have_text("1 firing (1 critical)")
    expect(page.locator(".sendense-machine-alerts .slick-row")).to_have_count(1)
    expect(page.locator(".sendense-machine-alerts .slick-cell.selected").first).to_be_visible()
    detail = page.locator(".alert-detail")
    expect(detail).to_contain_text(f"CRITICAL · Job failed · {alerts.critical_vm}")
    expect(detail).to_contain_text("NBD server reset the connection")
    expect(dialog).to_contain_text("Acknowledging and silencing need an operator's login")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    expect(page.get_by_role("button", name="Silence")).to_have_count(0)
    expect(page.locator(".sendense-history .slick-row")).to_have_count(1)
    page.screenshot(path=SCREENSHOTS / "alert-opens-machine.png")
    page.locator(".bk-Dialog .bk-close").click()
    expect(dialog).to_have_count(0)

    # The pipeline's own alert has no machine: it opens alone.
    _open_from_panel(page, alerts.ids["pipeline"], "Pipeline unhealthy")
    alone = page.locator(".bk-Dialog", has_text="Pipeline unhealthy · the pipeline")
    expect(alone).to_be_visible()
    expect(alone).to_contain_text("commit queue")
    expect(page.locator(".bk-Dialog", has_text="Machine ")).to_have_count(0)
    page.screenshot(path=SCREENSHOTS / "pipeline-alert-alone.png")


def test_an_operator_acknowledges_and_silences_in_their_own_name(
    browser, with_roles: str, alerts: SeededAlerts, viewer, operator
):
    alert_id = alerts.ids[alerts.critical_vm]
    for size in WINDOWS:
        context, page = _window(browser, size)
        try:
            _login(page, with_roles, "jane")
            _open_from_panel(page, alert_id, alerts.critical_vm)
            expect(page.locator(".alert-detail")).to_contain_text(f"Job failed · {alerts.critical_vm}")
            page.screenshot(path=SCREENSHOTS / f"operator-actions-{size[0]}x{size[1]}.png")
        finally:
            context.close()

    context, page = _window(browser, WINDOWS[0])
    try:
        _login(page, with_roles, "jane")
        _open_from_panel(page, alert_id, alerts.critical_vm)
        comment = "restarting the NBD server"
        page.get_by_placeholder("Comment (optional)").fill(comment)
        page.get_by_role("button", name="Acknowledge").click()
        expect(page.locator(".bk-Dialog")).to_contain_text("Acknowledged by jane.")
        acknowledgement = viewer.get(f"/alerts/{alert_id}").json()["acknowledgement"]
        assert acknowledgement["by"] == "jane" and acknowledgement["comment"] == comment, acknowledgement
        row = page.locator(".sendense-machine-alerts .slick-row")
        expect(row).to_contain_text("jane ·")
        expect(row).to_contain_text(comment)

        # Silence this rule on this machine (both boxes are ticked) for an hour.
        page.get_by_role("combobox").last.select_option(label="1 hour")
        page.get_by_placeholder("Reason (required)").fill("replacing the disk shelf")
        page.get_by_role("button", name="Silence").click()
        expect(page.locator(".bk-Dialog")).to_contain_text(
            re.compile(rf"Silenced rule job_failed on machine {alerts.critical_vm} until \d{{4}}-")
        )
        silences = viewer.get("/silences", params={"active": "true"}).json()["silences"]
        mine = [s for s in silences if s["vm_name"] == alerts.critical_vm]
        assert len(mine) == 1, silences
        assert mine[0]["rule"] == "job_failed" and mine[0]["created_by"] == "jane"
        assert mine[0]["reason"] == "replacing the disk shelf"
        assert viewer.get(f"/alerts/{alert_id}").json()["silenced"] is True
        expect(row).to_contain_text("silenced")
        page.screenshot(path=SCREENSHOTS / "operator-acknowledged-and-silenced.png")
        page.locator(".bk-Dialog .bk-close").click()
        expect(_panel_row(page, alert_id, alerts.critical_vm)).to_contain_text("silenced")

        # Without a reason, the form says so and nothing is sent.
        _open_from_panel(page, alerts.ids["pipeline"], "Pipeline unhealthy")
        page.get_by_role("button", name="Silence").click()
        expect(page.locator(".bk-Dialog")).to_contain_text("Say why it is silenced")
    finally:
        context.close()
        for silence in viewer.get("/silences", params={"active": "true"}).json()["silences"]:
            if silence["vm_name"] == alerts.critical_vm:  # ended, so that a rerun starts unsilenced
                operator.delete(f"/silences/{silence['id']}", params={"by": "e2e"})


def test_a_viewer_sees_no_acknowledge_or_silence_buttons(page: Page, with_roles: str, alerts: SeededAlerts):
    _login(page, with_roles, "victor")
    _open_from_panel(page, alerts.ids[alerts.critical_vm], alerts.critical_vm)
    expect(page.locator(".alert-detail")).to_contain_text(f"Job failed · {alerts.critical_vm}")
    expect(page.locator(".bk-Dialog")).to_contain_text("You are logged in as victor, a viewer")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    expect(page.get_by_role("button", name="Silence")).to_have_count(0)
    # Not hidden but never made: the session holds no such widget a page could reveal.
    assert page.evaluate("() => Bokeh.documents[0].get_model_by_name('machine-alert-ack')") is None
    # The page's session token names the user (signed by the server) and holds no login cookie.
    tokens = re.findall(r'"token":\s*"([^"]+)"', page.content())
    assert tokens, "no session token in the page"
    payload = get_token_payload(tokens[0])
    assert payload["sendense_user"] == "victor"
    cookie = next(c for c in page.context.cookies() if c["name"] == "sendense_operator")
    assert cookie["value"] not in json.dumps(payload) and "Cookie" not in payload["headers"], payload
    page.screenshot(path=SCREENSHOTS / "viewer-no-actions.png")


def test_the_machines_table_shows_each_machines_firing_alerts(page: Page, dashboard: str, alerts: SeededAlerts):
    page.goto(dashboard)
    page.locator("input.bk-input").fill(alerts.suffix)
    expect(page.locator(".bk-Div", has_text="Machines 1–4 of 4")).to_be_visible()
    for vm, text, colour, tip in (
        (alerts.critical_vm, "1 crit", RED, "1 firing alert: 1 critical"),
        (alerts.warning_vm, "1 warn", AMBER, "1 firing alert: 1 warning"),
        (alerts.info_vm, "1 info", BLUE, "1 firing alert: 1 info"),
    ):
        cell = page.locator(".sendense-machines .slick-row", has_text=vm).locator(".slick-cell").nth(1)
        expect(cell).to_have_text(text)
        expect(cell.locator(f"[title='{tip}']")).to_have_count(1)
        # Retried: the table re-renders its rows on every refresh, and a row read mid-render is detached.
        badge = cell.locator("span[style*=border-radius]")
        expect(badge).to_have_count(1)
        expect(badge).to_have_css("background-color", colour)
    resolved = page.locator(".sendense-machines .slick-row", has_text=alerts.resolved_vm)
    expect(resolved.locator(".slick-cell").nth(1)).to_have_text("")
    # The API cannot sort machines by their alerts: the header is not a sorting button.
    header = page.get_by_role("button", name="Alerts", exact=True)
    expect(header).to_be_disabled()
    page.screenshot(path=SCREENSHOTS / "machines-alert-column.png")


def test_the_panel_and_the_machines_column_follow_a_resolve_without_a_reload(
    page: Page, dashboard: str, alerts: SeededAlerts
):
    page.goto(dashboard)
    page.locator("input.bk-input").fill(alerts.suffix)
    cell = page.locator(".sendense-machines .slick-row", has_text=alerts.warning_vm).locator(".slick-cell").nth(1)
    expect(cell).to_have_text("1 warn")
    row = _panel_row(page, alerts.ids[alerts.warning_vm], alerts.warning_vm)
    expect(row).to_contain_text("firing")
    # A success clears the RPO alert at the next evaluation; the page sees it at its next re-read (every 5 s).
    alerts.succeed(alerts.warning_vm)
    alerts.evaluate()
    expect(cell).to_have_text("", timeout=15_000)
    _filter(page, "Resolved")
    expect(_panel_row(page, alerts.ids[alerts.warning_vm], alerts.warning_vm)).to_contain_text("resolved")
