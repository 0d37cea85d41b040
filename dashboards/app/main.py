"""Sendense operators' dashboard: machines table → details dialog with Summary, Performance, Analytics tabs.

Every API call is awaited (the client is async), so a slow answer holds up only the session that
asked; widget callbacks hand their work to the event loop with `doc.add_next_tick_callback`.
"""

from __future__ import annotations

from functools import partial

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Dialog, Div, TabPanel, Tabs

from dashboards.app.client import ApiError, DashboardApi
from dashboards.app.views.analytics import AnalyticsView
from dashboards.app.views.common import CARD_CSS, message_html
from dashboards.app.views.machines import MachinesView
from dashboards.app.views.performance import REFRESH_MS, PerformanceView
from dashboards.app.views.summary import SummaryView

doc = curdoc()
api: DashboardApi = doc.session_context.server_context.sendense_api

# Data sources and figures live in the views, one per part of the page.
machines = MachinesView(api, doc.add_next_tick_callback)
summary = SummaryView()
performance = PerformanceView(api, doc.add_next_tick_callback)
analytics = AnalyticsView()

# Widgets.
header = Div(text="<h2 style='margin:4px 0'>Sendense — protected machines</h2>" + CARD_CSS)
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


# Callbacks.
async def open_machine(vm_name: str) -> None:
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
    await performance.load(machine)
    tabs.active = 0
    if dialog.document is None:
        # Sent to the browser on first use: the main page's first paint does not wait for the
        # dialog's tabs and figures (measured: most of the table's time to show).
        doc.add_root(dialog)
    dialog.visible = True


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
doc.add_next_tick_callback(machines.load)

doc.title = "Sendense Telemetry"
doc.add_root(column(header, machines.layout, name="main-page"))
