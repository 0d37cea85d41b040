"""Sendense operators' dashboard, two pages of one Bokeh app.

`/`: the alerts panel and the machines table → a machine's dialog with Summary, Performance, Analytics
tabs; the tab's title counts the firing alerts. `/?view=estate`: the whole estate over time — the
backup-window timeline, the VM × day grid (a click opens the same dialog) and the reports to download.

Every API call is awaited (the client is async), so a slow answer holds up only the session that
asked; widget callbacks hand their work to the event loop with `doc.add_next_tick_callback`.
"""

from __future__ import annotations

from functools import partial
from html import escape

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Dialog, Div

from dashboards.app.alert_shaping import title_text
from dashboards.app.app_hooks import SESSION_USER
from dashboards.app.client import DashboardApi
from dashboards.app.views.alert_actions import AlertActions
from dashboards.app.views.alerts import ALERTS_REFRESH_MS, AlertPanel
from dashboards.app.views.common import CARD_CSS, message_html
from dashboards.app.views.estate import EstatePage
from dashboards.app.views.machine_dialog import MachineDialog
from dashboards.app.views.machines import MachinesView
from dashboards.app.views.performance import REFRESH_MS
from dashboards.auth import DashboardLogin

doc = curdoc()
server = doc.session_context.server_context
api: DashboardApi = server.sendense_api
login: DashboardLogin | None = server.sendense_login
# Who this page is for: the name the server signed into the session's token (None: nobody logged in).
user = login.session_user(doc.session_context.token_payload.get(SESSION_USER)) if login else None
request = doc.session_context.request
estate_view = (request.arguments.get("view") or [b""])[0] == b"estate" if request is not None else False


async def alerts_changed() -> None:
    """After an acknowledgement or silence: every list of alerts re-read at once."""
    await refresh_alerts()


def page_error(text: str) -> None:
    """Why a machine's dialog did not open, in the page's message box."""
    (estate.message if estate_view else machines.message).text = message_html(text, "error") if text else ""


# Data sources and figures live in the views, one per part of the page.
dialog = MachineDialog(doc, api, user, alerts_changed, page_error)
performance = dialog.performance
machines = MachinesView(api, doc.add_next_tick_callback)
estate = EstatePage(api, doc.add_next_tick_callback, dialog.open) if estate_view else None
# An alert without a machine (the pipeline's own) opens on its own, with the same actions.
lone_alert = AlertActions(api, user, doc.add_next_tick_callback, alerts_changed, "lone-alert")

# Widgets.
who = f"<span>{escape(user.name)} ({user.role}) · <a href='/logout'>Log out</a></span>" if user else ""
other_page = (
    "<a href='/' class='page-link'>Alerts and machines</a>"
    if estate_view
    else "<a href='/?view=estate' class='page-link'>Timeline · VM × day grid · reports</a>"
)
heading = "Sendense — the estate over time" if estate_view else "Sendense — protected machines"
header = Div(
    text=(
        "<div style='display:flex;justify-content:space-between;align-items:baseline;width:1258px'>"
        f"<h2 style='margin:4px 0'>{heading}</h2><span>{other_page}"
        f"{' · ' + who if who else ''}</span></div>{CARD_CSS}"
    ),
    name="page-header",
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
def open_alert(alert: dict) -> None:
    """An alert of the panel: its machine's dialog, with the alert chosen; a pipeline alert on its own."""
    if alert.get("vm_name"):
        doc.add_next_tick_callback(partial(dialog.open, alert["vm_name"], int(alert["id"])))
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
            if not estate_view:
                firing = await panel.load()
                if firing is not None:
                    doc.title = title_text(firing)
                    shown = lone_alert.alert
                    if shown is not None:
                        lone_alert.show(next((a for a in panel.alerts if a["id"] == shown["id"]), shown))
                await machines.load_alerts()
            await dialog.refresh_alerts()
            if not _refresh["again"]:
                break
    finally:
        _refresh["running"] = False


panel = AlertPanel(api, doc.add_next_tick_callback, open_alert)


def on_row_selected(_attr: str, _old: list[int], new: list[int]) -> None:
    vm_name = machines.vm_at(new[0]) if new else None
    if vm_name is not None:
        doc.add_next_tick_callback(partial(dialog.open, vm_name))


def on_dialog_closed() -> None:
    # Let the same row (or cell) be selected again; the table is re-read.
    if estate is not None:
        estate.clear_selection()
    else:
        doc.add_next_tick_callback(machines.load)


machines.source.selected.on_change("indices", on_row_selected)
dialog.on_closed = on_dialog_closed
doc.add_periodic_callback(performance.refresh, REFRESH_MS)
doc.add_periodic_callback(refresh_alerts, ALERTS_REFRESH_MS)
if estate is not None:
    doc.title = "Sendense — estate"
    doc.add_next_tick_callback(estate.load)
    doc.add_root(column(header, estate.layout, name="estate-page"))
else:
    doc.add_next_tick_callback(machines.load)
    doc.add_next_tick_callback(refresh_alerts)
    doc.title = title_text({})
    doc.add_root(column(header, panel.layout, machines.layout, name="main-page"))
