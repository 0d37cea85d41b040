"""Alerts: the main page's panel, a machine's alerts in its dialog, and the table both draw them in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from html import escape

from bokeh.layouts import column, row
from bokeh.models import (
    ColumnDataSource,
    CustomJS,
    DataTable,
    Div,
    HTMLTemplateFormatter,
    RadioButtonGroup,
    TableColumn,
)

from dashboards.app.alert_shaping import (
    SEVERITY_COLORS,
    SEVERITY_ORDER,
    alert_columns,
    count_firing,
    firing_summary,
)
from dashboards.app.client import ApiError, DashboardApi
from dashboards.app.views.alert_actions import AlertActions
from dashboards.app.views.common import message_div, message_html

__all__ = [
    "ALERTS_REFRESH_MS",
    "PANEL_LIMIT",
    "AlertPanel",
    "MachineAlerts",
    "alerts_table",
    "firing_by_machine",
    "redraw_on_change",
]

ALERTS_REFRESH_MS = 5_000
"""How often a page re-reads the alerts: the scheduler evaluates every 15 s, so a change shows within 20 s."""
PANEL_LIMIT = 50
"""Alerts the main panel holds: the firing ones first, then the newest resolved."""
MACHINE_LIMIT = 20
"""Alerts a machine's dialog holds."""
_FIRING_PAGE = 1000  # the API's largest page
# What the panel shows, as GET /alerts parameters: with hundreds of critical alerts firing, the warnings
# are found under "Warning", not below the first page.
PANEL_FILTERS: list[tuple[str, dict[str, str]]] = [
    ("All", {}),
    ("Critical", {"severity": "critical"}),
    ("Warning", {"severity": "warning"}),
    ("Info", {"severity": "info"}),
    ("Resolved", {"state": "resolved"}),
]

# Each cell is two lines: what it is, and under it what state it is in. Values are escaped (`<%- %>`); the
# colours are the dashboard's own (SEVERITY_COLORS), never the API's, so they go in as they are.
_CSS = """
.al { line-height: 17px; white-space: normal; padding-top: 2px; }
.al-sev { display: inline-block; padding: 0 6px; border-radius: 3px; font-weight: 700; font-size: 11px; }
.al-sub { color: #555; font-size: 11px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.al-clamp { display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden; }
.al-pipeline { color: #555; font-style: italic; }
.al-silenced { display: inline-block; padding: 0 6px; border-radius: 3px; background: #e0e0e0; color: #333;
  font-size: 11px; font-weight: 600; }
.al-resolved { opacity: 0.55; }
"""
_SEVERITY = (
    "<div class=\"al <%= state === 'firing' ? '' : 'al-resolved' %>\">"
    '<span class="al-sev" style="background:<%= sev_bg %>;color:<%= sev_fg %>"><%- value %></span>'
    '<div class="al-sub"><%- state %></div></div>'
)
_RULE = '<div class="al"><%- value %></div>'
_MACHINE = (
    '<div class="al" title="<%- vm_name %>"><span class="<%= vm_name ? \'\' : \'al-pipeline\' %>">'
    "<%- value %></span></div>"
)
_SUMMARY = '<div class="al al-clamp" title="<%- value %>"><%- value %></div>'
_SINCE = '<div class="al"><%- value %><div class="al-sub"><%- since_detail %></div></div>'
_ACK = '<div class="al"><%- value %><div class="al-sub" title="<%- ack_comment %>"><%- ack_comment %></div></div>'
_SILENCED = "<div class=\"al\"><%= value ? '<span class=\"al-silenced\">silenced</span>' : '' %></div>"
# Redraws the rows when their values change but not their number (BokehJS redraws a table only then).
_REDRAW = "const view = Bokeh.index.find_one(table); if (view != null) view.updateGrid();"


def redraw_on_change(source: ColumnDataSource, table: DataTable) -> None:
    """Have `table` redraw whenever `source`'s data is replaced or patched, keeping its scroll position."""
    redraw = CustomJS(args={"table": table}, code=_REDRAW)
    source.js_on_change("data", redraw)
    source.js_on_change("patching", redraw)


def alerts_table(
    source: ColumnDataSource, *, summary_width: int, with_machine: bool, height: int, name: str
) -> DataTable:
    """The alerts as a table of two-line rows; selecting a row is how an alert is opened."""

    def col(field: str, title: str, width: int, template: str) -> TableColumn:
        return TableColumn(field=field, title=title, width=width, formatter=HTMLTemplateFormatter(template=template))

    columns = [
        col("severity", "Severity", 95, _SEVERITY),
        col("rule", "Rule", 140, _RULE),
        *([col("machine", "Machine", 165, _MACHINE)] if with_machine else []),
        col("summary", "Summary", summary_width, _SUMMARY),
        col("since", "Since (UTC)", 140, _SINCE),
        col("ack_by", "Acknowledged", 170, _ACK),
        col("silenced", "Silenced", 85, _SILENCED),
    ]
    table = DataTable(
        source=source,
        columns=columns,
        row_height=40,
        sortable=False,  # the API's order (firing, severity, newest) is the one that matters
        autosize_mode="none",
        selectable=True,
        index_position=None,
        width=sum(c.width for c in columns) + 18,  # and room for the vertical scroll bar
        height=height,
        margin=(0, 5, 5, 5),
        stylesheets=[_CSS],
        name=name,
    )
    redraw_on_change(source, table)
    return table


def _counts_html(firing: dict[str, int]) -> str:
    parts = [
        f'<span class="al-sev" style="background:{SEVERITY_COLORS[s][0]};color:{SEVERITY_COLORS[s][1]};'
        f'padding:1px 8px;border-radius:3px;font-weight:700;font-size:12px">{int(firing.get(s, 0))} {s}</span>'
        for s in SEVERITY_ORDER
        if firing.get(s)
    ]
    return " ".join(parts) if parts else '<span style="color:#2e7d32;font-weight:600">none firing</span>'


class AlertPanel:
    """The main page's alerts: firing first with their severities' colours, then the newest resolved.

    Selecting one hands it to `open_alert` (its machine's dialog, or the alert alone when it has none).
    """

    def __init__(
        self,
        api: DashboardApi,
        schedule: Callable[[Callable[[], Awaitable[None]]], None],
        open_alert: Callable[[dict], None],
    ) -> None:
        self.api = api
        self.open_alert = open_alert
        self.alerts: list[dict] = []
        self.firing: dict[str, int] = {}
        self._asked = 0
        self.source = ColumnDataSource(alert_columns([], datetime.now(UTC)), name="alerts-source")
        self.heading = Div(text="", name="alerts-heading", width=880, margin=(8, 5, 0, 5))
        self.filter = RadioButtonGroup(
            labels=[label for label, _ in PANEL_FILTERS], active=0, width=360, margin=(2, 5, 2, 5), name="alerts-filter"
        )
        self.message = message_div("alerts-message")
        self.table = alerts_table(self.source, summary_width=455, with_machine=True, height=188, name="alerts-table")
        self.table.css_classes = ["sendense-alerts"]
        self.layout = column(row(self.heading, self.filter), self.message, self.table, name="alerts-panel")
        self.source.selected.on_change("indices", self._selected)
        self.filter.on_change("active", lambda _a, _o, _n: schedule(self.load))

    async def load(self) -> dict[str, int] | None:
        """Re-read the alerts; the firing counts per severity, or None when the API could not be read."""
        self._asked += 1
        asked = self._asked
        params = PANEL_FILTERS[self.filter.active or 0][1]
        try:
            page = await self.api.alerts(limit=PANEL_LIMIT, **params)
        except ApiError as exc:
            self.heading.text = "<div style='font-size:14px'><b>Alerts</b></div>"
            self.message.text = message_html(f"Alerts: {exc}", "error")
            return None
        if asked != self._asked:  # another filter was chosen meanwhile: its answer shows
            return None
        self.message.text = ""
        self.alerts = page.get("alerts") or []
        self.firing = {s: int((page.get("firing") or {}).get(s, 0)) for s in SEVERITY_ORDER}
        total, shown = int(page.get("total", 0)), len(self.alerts)
        more = f" · the first {shown} of {total:,} shown" if total > shown else ""
        self.heading.text = (
            f"<div class='alerts-heading' style='font-size:14px'><b>Alerts</b> &nbsp;{_counts_html(self.firing)}"
            f"<span style='color:#555'>{escape(more)}</span>"
            + ("" if self.alerts else " <span style='color:#555'>· no alert has fired yet</span>")
            + "</div>"
        )
        columns = alert_columns(self.alerts, datetime.now(UTC))
        if columns != dict(self.source.data):
            self.source.data = columns
        return self.firing

    def _selected(self, _attr: str, _old: list[int], new: list[int]) -> None:
        if not new or not 0 <= new[0] < len(self.alerts):
            return
        alert = self.alerts[new[0]]
        self.source.selected.indices = []  # so that the same alert can be opened again
        self.open_alert(alert)


class MachineAlerts:
    """A machine's alerts in its dialog (firing, then the newest resolved), and the actions on the one selected."""

    def __init__(self, api: DashboardApi, actions: AlertActions) -> None:
        self.api = api
        self.actions = actions
        self.vm_name: str | None = None
        self.alerts: list[dict] = []
        self.selected_id: int | None = None
        self.source = ColumnDataSource(alert_columns([], datetime.now(UTC)), name="machine-alerts-source")
        self.heading = Div(text="", name="machine-alerts", sizing_mode="stretch_width")
        self.table = alerts_table(
            self.source, summary_width=325, with_machine=False, height=150, name="machine-alerts-table"
        )
        self.table.css_classes = ["sendense-machine-alerts"]
        self.layout = column(self.heading, self.table, actions.layout)
        self.source.selected.on_change("indices", self._selected)

    async def load(self, vm_name: str | None = None, select: int | None = None) -> None:
        """Show `vm_name`'s alerts (default: the machine shown), `select` (an alert id) chosen for the actions."""
        if vm_name is not None and vm_name != self.vm_name:
            self.vm_name, self.selected_id = vm_name, None
        if select is not None:
            self.selected_id = select
        if self.vm_name is None:
            return
        asked = self.vm_name
        try:
            page = await self.api.alerts(vm_name=asked, limit=MACHINE_LIMIT)
        except ApiError as exc:
            self.heading.text = message_html(f"Alerts: {exc}", "error")
            return
        if asked != self.vm_name:  # another machine was opened meanwhile
            return
        self.alerts = page.get("alerts") or []
        total, worst, _tip = firing_summary(page.get("firing"))
        resolved = sum(1 for a in self.alerts if a.get("state") != "firing")
        if not self.alerts:
            text = "No alert has fired for this machine."
        else:
            split = ", ".join(f"{n} {s}" for s in SEVERITY_ORDER if (n := (page.get("firing") or {}).get(s)))
            text = (f"{total} firing ({split})" if total else "none firing") + (
                f"; {resolved} resolved shown" if resolved else ""
            )
        self.heading.text = f"<b>Alerts</b> <span class='machine-alerts-text'>{escape(text)}</span>"
        self.table.visible = bool(self.alerts)
        # As tall as its rows, up to four (then it scrolls): the backup history stays close below.
        self.table.height = 30 + 40 * min(max(len(self.alerts), 1), 4)
        columns = alert_columns(self.alerts, datetime.now(UTC))
        if columns != dict(self.source.data):
            self.source.data = columns
        ids = [int(a["id"]) for a in self.alerts]
        chosen = self.selected_id if self.selected_id in ids else None
        wanted = [ids.index(chosen)] if chosen is not None else []
        if list(self.source.selected.indices) != wanted:
            self.source.selected.indices = wanted
        self.actions.show(self.alerts[wanted[0]] if wanted else None)

    def _selected(self, _attr: str, _old: list[int], new: list[int]) -> None:
        if new and 0 <= new[0] < len(self.alerts):
            self.selected_id = int(self.alerts[new[0]]["id"])
            self.actions.show(self.alerts[new[0]])


async def firing_by_machine(api: DashboardApi, vm_names: Sequence[str]) -> dict[str, dict[str, int]]:
    """Firing alerts per machine and severity, for the machines shown.

    One request when every firing alert fits one page (the usual case); otherwise each machine's own
    counts (the API's `firing` of a `vm_name`), a few at a time.
    """
    page = await api.alerts(state="firing", limit=_FIRING_PAGE)
    if int(page.get("total", 0)) <= len(page.get("alerts") or []):
        return count_firing(page.get("alerts") or [])
    limit = asyncio.Semaphore(8)

    async def one(vm: str) -> tuple[str, dict[str, int]]:
        async with limit:
            counts = (await api.alerts(state="firing", vm_name=vm, limit=1)).get("firing") or {}
        return vm, {s: int(counts.get(s, 0)) for s in SEVERITY_ORDER}

    return dict(await asyncio.gather(*(one(vm) for vm in dict.fromkeys(vm_names))))
