"""Main page: the protection-flows table, a page at a time from the API, searched and sorted by it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bokeh.layouts import column, row
from bokeh.models import (
    Button,
    ColumnDataSource,
    DataTable,
    Div,
    HTMLTemplateFormatter,
    NumberFormatter,
    Select,
    TableColumn,
    TextInput,
)

from dashboards.app.client import ApiError, DashboardApi
from dashboards.app.shaping import machines_columns, page_text
from dashboards.app.views.common import message_html

__all__ = ["PAGE_SIZE", "SORTS", "MachinesView"]

PAGE_SIZE = 100
SORTS = [
    ("rpo", "RPO: most overdue first"),
    ("last_backup", "Last backup: newest first"),
    ("vm_name", "VM name"),
    ("success_rate", "Success rate: lowest first"),
    ("total_backups", "Backups: most first"),
]
_ORDER = {"rpo": "desc", "last_backup": "desc", "vm_name": "asc", "success_rate": "asc", "total_backups": "desc"}
# The status text is the dashboard's own ("out of RPO" / "within RPO"), never the API's, so it is safe as HTML.
_RPO_TEMPLATE = (
    "<span style=\"font-weight:600;color:<%= value === 'out of RPO' ? '#c62828' : '#2e7d32' %>\"><%= value %></span>"
)


class MachinesView:
    """One page of machines; search, sort and paging ask the API again (it holds 10,000s of machines)."""

    def __init__(self, api: DashboardApi, schedule: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
        self.api = api
        self.schedule = schedule
        self.offset = 0
        self.total = 0
        self._asked = 0  # answers to earlier requests (a search typed on) are dropped
        self.source = ColumnDataSource(machines_columns([]), name="machines-source")
        number = NumberFormatter(format="0,0.0", nan_format="—")
        self.search = TextInput(placeholder="Search VM or repository", width=360, name="machine-search")
        self.sort = Select(options=SORTS, value="rpo", width=260, name="machine-sort")
        self.previous = Button(label="◀ Previous", width=110, name="machines-previous", disabled=True)
        self.next = Button(label="Next ▶", width=110, name="machines-next", disabled=True)
        self.info = Div(text="", name="machines-page")
        self.message = Div(text="", name="page-message", sizing_mode="stretch_width")
        self.table = DataTable(
            source=self.source,
            columns=[
                TableColumn(field="vm_name", title="VM", width=210),
                TableColumn(field="repository_id", title="Repository", width=120),
                TableColumn(
                    field="rpo_status", title="RPO", formatter=HTMLTemplateFormatter(template=_RPO_TEMPLATE), width=90
                ),
                TableColumn(field="rpo_age", title="Last success (age / RPO)", width=150),
                TableColumn(field="last_type", title="Last job type", width=120),
                TableColumn(field="last_status", title="Last status", width=90),
                TableColumn(field="last_time", title="Last job (UTC)", width=150),
                TableColumn(field="last_size_mb", title="Last size (MB)", formatter=number, width=100),
                TableColumn(field="success_rate", title="Success rate (%)", formatter=number, width=110),
                TableColumn(field="total_backups", title="Backups", width=70),
            ],
            # Sorted by the API across every page; a click on a header would sort this page only.
            sortable=False,
            selectable=True,
            index_position=None,
            width=1210,
            height=520,
            name="machines-table",
        )
        self.layout = column(row(self.search, self.sort, self.previous, self.next, self.info), self.message, self.table)
        self.search.on_change("value_input", lambda _a, _o, _n: self._first_page())
        self.sort.on_change("value", lambda _a, _o, _n: self._first_page())
        self.previous.on_click(lambda: self._page(-PAGE_SIZE))
        self.next.on_click(lambda: self._page(PAGE_SIZE))

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
        sort = self.sort.value
        try:
            page = await self.api.machines(
                limit=PAGE_SIZE,
                offset=self.offset,
                sort=sort,
                order=_ORDER.get(sort, "desc"),
                search=(self.search.value_input or "").strip(),
            )
        except ApiError as exc:
            if asked == self._asked:
                self.message.text = message_html(str(exc), "error")
            return
        if asked != self._asked:
            return
        self.total = int(page.get("total", 0))
        rows = page.get("machines") or []
        self.message.text = (
            ""
            if self.total or self.search.value_input
            else message_html("No machines yet: no backup job has been created.")
        )
        self.source.selected.indices = []
        self.source.data = machines_columns(rows)
        self.info.text = page_text(self.offset, len(rows), self.total)
        self.previous.disabled = self.offset == 0
        self.next.disabled = self.offset + len(rows) >= self.total

    def vm_at(self, index: int) -> str | None:
        """The VM on row `index` of the page shown, or None when the page changed under the click."""
        names = self.source.data["vm_name"]
        return names[index] if 0 <= index < len(names) else None
