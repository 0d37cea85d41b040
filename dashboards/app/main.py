"""Sendense operators' dashboard: alerts panel and machines table → details dialog with Summary, Performance,
Analytics tabs; the tab's title counts the firing alerts.

Every API call is awaited (the client is async), so a slow answer holds up only the session that
asked; widget callbacks hand their work to the event loop with `doc.add_next_tick_callback`.
"""

from __future__ import annotations

from functools import partial
from html import escape

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Dialog, Div, TabPanel, Tabs

from dashboards.app.alert_shaping import title_text
from dashboards.app.app_hooks import SESSION_USER
from dashboards.app.client import ApiError, DashboardApi
from dashboards.app.views.alert_actions import AlertActions
from dashboards.app.views.alerts import ALERTS_REFRESH_MS, AlertPanel, MachineAlerts
from dashboards.app.views.analytics import AnalyticsView
from dashboards.app.views.common import CARD_CSS, message_html
from dashboards.app.views.machines import MachinesView
from dashboards.app.views.performance import REFRESH_MS, PerformanceView
from dashboards.app.views.summary import SummaryView
from dashboards.auth import DashboardLogin

doc = curdoc()
server = doc.session_context.server_context
api: DashboardApi = server.sendense_api
login: DashboardLogin | None = server.sendense_login
# Who this page is for: the name the server signed into the session's token (None: nobody logged in).
user = login.session_user(doc.session_context.token_payload.get(SESSION_USER)) if login else None


async def alerts_changed() -> None:
    """After an acknowledgement or silence: every list of alerts re-read at once."""
    await refresh_alerts()


# Data sources and figures live in the views, one per part of the page.
machines = MachinesView(api, doc.add_next_tick_callback)
machine_alerts = MachineAlerts(
    api, AlertActions(api, user, doc.add_next_tick_callback, alerts_changed, "machine-alert")
)
summary = SummaryView(machine_alerts.layout)
performance = PerformanceView(api, doc.add_next_tick_callback)
analytics = AnalyticsView()
# An alert without a machine (the pipeline's own) opens on its own, with the same actions.
lone_alert = AlertActions(api, user, doc.add_next_tick_callback, alerts_changed, "lone-alert")

# Widgets.
who = f"<span>{escape(user.name)} ({user.role}) · <a href='/logout'>Log out</a></span>" if user else ""
header = Div(
    text=(
        "<div style='display:flex;justify-content:space-between;align-items:baseline;width:1258px'>"
        f"<h2 style='margin:4px 0'>Sendense — protected machines</h2>{who}</div>{CARD_CSS}"
    ),
    name="page-header",
)
dialog_message = Div(text="", name="dialog-message", sizing_mode="stretch_width")
tabs = Tabs(
    tabs=[
        TabPanel(child=summary.layout, title="Summary"),
        TabPanel(child=performance.layout, title="Performance"),
        TabPanel(child=analytics.layout, title="Analytics"),
    ],
    name="machine-tabs",
)
# Bokeh places a dialog at (200 px, 200 px), 80 % × 60 % of the window: at 1280 × 800 that is 480 px
# for tabs whose charts need 750. Sized to the window instead, and scrolling inside (its content
# box scrolls). Moving, resizing, pinning, collapsing and (un)maximising would fight these rules
# (Bokeh repositions through a stylesheet that this one overrides), so the dialog offers only Close.
DIALOG_CSS = """
:host { left: max(8px, calc(50vw - 600px)); top: 40px; width: min(1200px, calc(100vw - 16px));
  height: calc(100vh - 56px); }
.bk-grip { display: none; }
.bk-title { cursor: default; }
"""
dialog = Dialog(
    title="Machine",
    content=column(dialog_message, tabs),
    visible=False,
    close_action="hide",  # keep the views: the next machine reuses them
    movable="none",
    resizable="none",
    pinnable=False,
    collapsible=False,
    minimizable=False,
    maximizable=False,
    stylesheets=[DIALOG_CSS],
    name="machine-dialog",
)
LONE_CSS = """
:host { left: max(8px, calc(50vw - 500px)); top: 80px; width: min(1000px, calc(100vw - 16px)); height: auto; }
.bk-grip { display: none; }
"""
lone_dialog = Dialog(
    title="Alert",
    content=lone_alert.layout,
    visible=False,
    close_action="hide",
    movable="none",
    resizable="none",
    pinnable=False,
    collapsible=False,
    minimizable=False,
    maximizable=False,
    stylesheets=[LONE_CSS],
    name="alert-dialog",
)


# Callbacks.
async def open_machine(vm_name: str, alert_id: int | None = None) -> None:
    try:
        machine = await api.machine(vm_name)
    except ApiError as exc:
        machines.message.text = message_html(str(exc), "error")
        return
    machines.message.text = ""
    dialog_message.text = ""
    # The title is plain text (Bokeh escapes it): escaping it here too showed "&lt;" to operators.
    dialog.title = f"Machine {vm_name}"
    summary.update(machine)
    analytics.update(machine)
    await machine_alerts.load(vm_name, select=alert_id)
    await performance.load(machine)
    tabs.active = 0
    if dialog.document is None:
        # Sent to the browser on first use: the main page's first paint does not wait for the
        # dialog's tabs and figures (measured: most of the table's time to show).
        doc.add_root(dialog)
    dialog.visible = True


def open_alert(alert: dict) -> None:
    """An alert of the panel: its machine's dialog, with the alert chosen; a pipeline alert on its own."""
    if alert.get("vm_name"):
        doc.add_next_tick_callback(partial(open_machine, alert["vm_name"], int(alert["id"])))
        return
    lone_alert.show(alert)
    if lone_dialog.document is None:
        doc.add_root(lone_dialog)
    lone_dialog.visible = True


_refresh = {"running": False, "again": False}


async def refresh_alerts() -> None:
    """The panel, the tab's title, the machines' alert column and an open dialog's alerts, re-read."""
    if _refresh["running"]:  # a slow API, or an action meanwhile: once more when this one ends, no pile-up
        _refresh["again"] = True
        return
    _refresh["running"] = True
    try:
        while True:
            _refresh["again"] = False
            firing = await panel.load()
            if firing is not None:
                doc.title = title_text(firing)
                shown = lone_alert.alert
                if shown is not None:
                    lone_alert.show(next((a for a in panel.alerts if a["id"] == shown["id"]), shown))
            await machines.load_alerts()
            if dialog.visible:
                await machine_alerts.load()
            if not _refresh["again"]:
                break
    finally:
        _refresh["running"] = False


panel = AlertPanel(api, doc.add_next_tick_callback, open_alert)


def on_row_selected(_attr: str, _old: list[int], new: list[int]) -> None:
    vm_name = machines.vm_at(new[0]) if new else None
    if vm_name is not None:
        doc.add_next_tick_callback(partial(open_machine, vm_name))


def on_dialog_visible(_attr: str, _old: bool, new: bool) -> None:
    if not new:
        # Closed: stop following a live job, and let the same row be selected again; the table is re-read.
        performance.live = False
        doc.add_next_tick_callback(machines.load)


machines.source.selected.on_change("indices", on_row_selected)
dialog.on_change("visible", on_dialog_visible)
doc.add_periodic_callback(performance.refresh, REFRESH_MS)
doc.add_periodic_callback(refresh_alerts, ALERTS_REFRESH_MS)
doc.add_next_tick_callback(machines.load)
doc.add_next_tick_callback(refresh_alerts)

doc.title = title_text({})
doc.add_root(column(header, panel.layout, machines.layout, name="main-page"))
