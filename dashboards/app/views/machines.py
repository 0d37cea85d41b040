"""Main page: the protection-flows table, a page at a time from the API, searched and sorted by it, with each
machine's firing alerts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple

from bokeh.layouts import column, row
from bokeh.models import (
    Button,
    CellFormatter,
    ColumnDataSource,
    DataTable,
    Div,
    HTMLTemplateFormatter,
    NumberFormatter,
    Select,
    StringFormatter,
    TableColumn,
    TextInput,
)

from dashboards.app.alert_shaping import machine_alert_columns
from dashboards.app.client import ApiError, DashboardApi
from dashboards.app.shaping import machines_columns, page_text
from dashboards.app.table_sort import DEFAULT_SORT, SORT_CHOICES, Sort, header_label, header_tip, sort_after_click
from dashboards.app.views.alerts import firing_by_machine, redraw_on_change
from dashboards.app.views.common import message_div, message_html, replace_rows

__all__ = ["PAGE_SIZE", "MachinesView"]

PAGE_SIZE = 100
# The status text is the dashboard's own ("out of RPO" / "within RPO"), never the API's, so it is safe as HTML.
_RPO_TEMPLATE = (
    "<span style=\"font-weight:600;color:<%= value === 'out of RPO' ? '#c62828' : '#2e7d32' %>\"><%= value %></span>"
)
# The score in %, in a pill coloured by its level (the API's Literal: high red, medium amber, low green, as
# the alerts' pills); the level and the reasons are the tooltip, escaped.
_RISK_TEMPLATE = (
    '<span title="<%- risk_tip %>"><% if (value) { %><span style="display:inline-block;padding:0 5px;'
    "border-radius:8px;font-weight:700;background:<%= risk_level === 'high' ? '#c62828' : risk_level === "
    "'medium' ? '#ef6c00' : '#e8f5e9' %>;color:<%= risk_level === 'low' ? '#2e7d32' : '#ffffff' %>\">"
    "<%- value %></span><% } %></span>"
)
# A name longer than its column ends in "…"; the whole name is its tooltip (escaped: names are the agents').
_NAME_TEMPLATE = '<span title="<%- value %>"><%- value %></span>'
# How many alerts fire, on the worst one's colour, and that severity in short (crit, warn, info); the tooltip
# says it in full. The colours and words are the dashboard's own (alert_shaping), safe as HTML.
_ALERTS_TEMPLATE = (
    '<span title="<%- alerts_tip %>"><% if (value > 0) { %><span style="display:inline-block;min-width:9px;'
    "padding:0 5px;border-radius:8px;text-align:center;font-weight:700;background:<%= alerts_bg %>;"
    'color:<%= alerts_fg %>"><%= value %></span> <span style="font-size:11px"><%= alerts_worst %></span>'
    "<% } %></span>"
)
# The grid draws no header of its own (a click there would sort only the page shown): these buttons are
# the header, flat and left-aligned like one, each as wide as its column.
_HEADER_CSS = """
:host { --header-bg: #f3f3f3; }
.bk-btn { border: 0; border-radius: 0; box-shadow: none; background: var(--header-bg); color: #1a1a1a;
  border-right: 1px solid #d6d6d6; border-bottom: 1px solid #9e9e9e; font-weight: 600; padding: 5px 6px;
  justify-content: flex-start; text-align: left; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.bk-btn:hover:not(:disabled) { background: #e2ebf6; }
.bk-btn:focus { outline: none; }
.bk-btn:disabled { cursor: default; opacity: 1; background: var(--header-bg); color: #555; }
"""


class _Column(NamedTuple):
    field: str
    title: str
    width: int  # pixels: wide enough for the longest value the column shows (tests/e2e check it)
    sort: str | None = None  # the API's `sort` for this column, or None when it cannot sort by it
    formatter: CellFormatter | None = None


def _columns() -> list[_Column]:
    number = NumberFormatter(format="0,0.0", nan_format="—")
    # 1,250 px in all, so that the page fits a 1,280-pixel window; each as wide as its longest value or its
    # header with ▲/▼ (12 px type), whichever is wider.
    return [
        _Column("vm_name", "VM", 160, "vm_name", HTMLTemplateFormatter(template=_NAME_TEMPLATE)),
        # GET /machines cannot sort by alerts: its header is not a button that sorts.
        _Column("alerts", "Alerts", 60, None, HTMLTemplateFormatter(template=_ALERTS_TEMPLATE)),
        _Column("repository_id", "Repository", 155, None, HTMLTemplateFormatter(template=_NAME_TEMPLATE)),
        _Column("rpo_status", "RPO", 85, "rpo", HTMLTemplateFormatter(template=_RPO_TEMPLATE)),
        _Column("rpo_age", "Age / RPO", 100),
        _Column("risk", "Risk", 60, "risk", HTMLTemplateFormatter(template=_RISK_TEMPLATE)),
        _Column("last_type", "Last job type", 145),
        _Column("last_status", "Last status", 90),
        _Column("last_time", "Last job (UTC)", 140, "last_backup"),
        # Risk took its 60 px from these three: shorter headers, and Age / RPO's longest usual value.
        _Column("last_size_mb", "Size (MB)", 85, None, number),
        _Column("success_rate", "Success %", 85, "success_rate", number),
        _Column("total_backups", "Backups", 85, "total_backups"),
    ]


def _rows(machines: list[dict], firing: dict[str, dict[str, int]]) -> dict[str, list]:
    return {**machines_columns(machines), **machine_alert_columns([m["vm_name"] for m in machines], firing)}


class MachinesView:
    """One page of machines; search, sort and paging ask the API again (it holds 10,000s of machines)."""

    def __init__(self, api: DashboardApi, schedule: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
        self.api = api
        self.schedule = schedule
        self.offset = 0
        self.total = 0
        self._asked = 0  # answers to earlier requests (a search typed on) are dropped
        self.source = ColumnDataSource(_rows([], {}), name="machines-source")
        self.search = TextInput(placeholder="Search VM or repository", width=360, name="machine-search")
        # The one place the order lives: header clicks set it too, and show it with ▲ / ▼.
        self.sort = Select(options=SORT_CHOICES, value=DEFAULT_SORT.value, width=260, name="machine-sort")
        self.previous = Button(label="◀ Previous", width=110, name="machines-previous", disabled=True)
        self.next = Button(label="Next ▶", width=110, name="machines-next", disabled=True)
        self.info = Div(text="", name="machines-page")
        # No room while empty: at 1,280 × 800 the alerts panel and this table share every pixel of height.
        self.message = message_div("page-message")
        self.columns = _columns()
        self.headers = [self._header(c) for c in self.columns]
        width = sum(c.width for c in self.columns)
        self.table = DataTable(
            source=self.source,
            columns=[
                TableColumn(field=c.field, title=c.title, width=c.width, formatter=c.formatter or StringFormatter())
                for c in self.columns
            ],
            header_row=False,
            sortable=False,
            autosize_mode="none",  # the columns keep their widths, so the header above stays aligned
            selectable=True,
            index_position=None,
            width=width + 18,  # and room for the vertical scroll bar
            height=420,
            margin=(0, 5, 5, 5),
            css_classes=["sendense-machines"],
            name="machines-table",
        )
        redraw_on_change(self.source, self.table)  # the alert column is patched in place
        header = row(*self.headers, spacing=0, margin=(5, 5, 0, 5), name="machines-header")
        self.layout = column(
            row(self.search, self.sort, self.previous, self.next, self.info), self.message, header, self.table
        )
        self._show_sort()
        self.search.on_change("value_input", lambda _a, _o, _n: self._first_page())
        self.sort.on_change("value", lambda _a, _o, _n: self._sorted())
        self.previous.on_click(lambda: self._page(-PAGE_SIZE))
        self.next.on_click(lambda: self._page(PAGE_SIZE))

    def _header(self, col: _Column) -> Button:
        button = Button(
            label=col.title,
            width=col.width,
            height=30,
            margin=0,
            disabled=col.sort is None,
            stylesheets=[_HEADER_CSS],
            name=f"header-{col.field}",
        )
        if col.sort is not None:
            key = col.sort
            button.on_click(lambda: self._header_clicked(key))
        return button

    def _header_clicked(self, key: str) -> None:
        self.sort.value = sort_after_click(Sort.parse(self.sort.value), key).value  # its callback loads

    def _show_sort(self) -> None:
        current = Sort.parse(self.sort.value)
        for col, button in zip(self.columns, self.headers, strict=True):
            button.label = header_label(col.title, col.sort, current)
            button.html_attributes = {"title": header_tip(col.sort, current)}

    def _sorted(self) -> None:
        self._show_sort()
        self._first_page()

    def _first_page(self) -> None:
        self.offset = 0
        self.schedule(self.load)

    def _page(self, step: int) -> None:
        self.offset = max(0, min(self.offset + step, max(self.total - 1, 0) // PAGE_SIZE * PAGE_SIZE))
        self.schedule(self.load)

    async def load(self) -> None:
        """Ask for the current page; show it (or why it could not be read)."""
        self._asked += 1
        asked = self._asked
        sort = Sort.parse(self.sort.value)
        try:
            page = await self.api.machines(
                limit=PAGE_SIZE,
                offset=self.offset,
                sort=sort.key,
                order=sort.order,
                search=(self.search.value_input or "").strip(),
            )
        except ApiError as exc:
            if asked == self._asked:
                self.message.text = message_html(str(exc), "error")
            return
        if asked != self._asked:
            return
        rows = page.get("machines") or []
        firing = await self._firing([m["vm_name"] for m in rows]) or {}
        if asked != self._asked:
            return
        self.total = int(page.get("total", 0))
        self.message.text = (
            ""
            if self.total or self.search.value_input
            else message_html("No machines yet: no backup job has been created.")
        )
        self.source.selected.indices = []
        replace_rows(self.source, _rows([], {}), _rows(rows, firing))
        self.info.text = page_text(self.offset, len(rows), self.total)
        self.previous.disabled = self.offset == 0
        self.next.disabled = self.offset + len(rows) >= self.total

    async def _firing(self, vm_names: list[str]) -> dict[str, dict[str, int]] | None:
        try:
            return await firing_by_machine(self.api, vm_names) if vm_names else {}
        except ApiError:
            return None  # the alerts panel says why; the machines still show

    async def load_alerts(self) -> None:
        """Re-read the firing alerts of the machines shown; patch the column in place when they changed."""
        names = list(self.source.data["vm_name"])
        if not names:
            return
        firing = await self._firing(names)
        if firing is None or list(self.source.data["vm_name"]) != names:  # unread, or another page came
            return
        columns = machine_alert_columns(names, firing)
        if any(list(self.source.data[key]) != values for key, values in columns.items()):
            self.source.patch({key: [(slice(0, len(names)), values)] for key, values in columns.items()})

    def vm_at(self, index: int) -> str | None:
        """The VM on row `index` of the page shown, or None when the page changed under the click."""
        names = self.source.data["vm_name"]
        return names[index] if 0 <= index < len(names) else None
