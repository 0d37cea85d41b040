"""Sendense operators' dashboard: machines table → details dialog with Summary, Performance, Analytics tabs."""

from __future__ import annotations

from html import escape

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
machines = MachinesView()
summary = SummaryView()
performance = PerformanceView(api)
analytics = AnalyticsView()

# Widgets.
header = Div(text="<h2 style='margin:4px 0'>Sendense — protected machines</h2>" + CARD_CSS)
page_message = Div(text="", name="page-message", sizing_mode="stretch_width")
dialog_message = Div(text="", name="dialog-message", sizing_mode="stretch_width")
tabs = Tabs(
    tabs=[
        TabPanel(child=summary.layout, title="Summary"),
        TabPanel(child=performance.layout, title="Performance"),
        TabPanel(child=analytics.layout, title="Analytics"),
    ],
    name="machine-tabs",
)
dialog = Dialog(
    title="Machine",
    content=column(dialog_message, tabs),
    visible=False,
    close_action="hide",  # keep the views: the next machine reuses them
    name="machine-dialog",
)


# Callbacks.
def load_machines() -> None:
    try:
        rows = api.machines()
    except ApiError as exc:
        page_message.text = message_html(str(exc), "error")
        return
    page_message.text = "" if rows else message_html("No machines yet: no backup job has been created.")
    machines.set_machines(rows)


def open_machine(vm_name: str) -> None:
    try:
        machine = api.machine(vm_name)
    except ApiError as exc:
        page_message.text = message_html(str(exc), "error")
        return
    page_message.text = ""
    dialog_message.text = ""
    dialog.title = f"Machine {escape(vm_name)}"
    summary.update(machine)
    analytics.update(machine)
    performance.load(machine)
    tabs.active = 0
    if dialog.document is None:
        # Sent to the browser on first use: the main page's first paint does not wait for the
        # dialog's tabs and figures (measured: most of the table's time to show).
        doc.add_root(dialog)
    dialog.visible = True


def on_row_selected(_attr: str, _old: list[int], new: list[int]) -> None:
    if new:
        open_machine(machines.vm_at(new[0]))


def on_dialog_visible(_attr: str, _old: bool, new: bool) -> None:
    if not new:
        # Closed: stop following a live job, and let the same row be selected again; the table is re-read.
        performance.live = False
        load_machines()


machines.source.selected.on_change("indices", on_row_selected)
dialog.on_change("visible", on_dialog_visible)
doc.add_periodic_callback(performance.refresh, REFRESH_MS)
load_machines()

doc.title = "Sendense Telemetry"
doc.add_root(column(header, page_message, machines.search, machines.table, name="main-page"))
