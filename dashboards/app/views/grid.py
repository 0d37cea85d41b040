"""The VM × day grid: machines as rows, the last 30 days as columns, a cell coloured by the day's outcome;
paged and searched by the API like the machines table; a click on a cell opens that machine's dialog."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from bokeh.layouts import column, row
from bokeh.models import Button, ColumnDataSource, Div, FactorRange, HoverTool, TapTool, TextInput
from bokeh.plotting import figure

from dashboards.app.client import ApiError, DashboardApi
from dashboards.app.estate_shaping import OUTCOME_COLORS, OUTCOME_LABELS, grid_columns
from dashboards.app.shaping import page_text
from dashboards.app.views.common import message_div, message_html
from dashboards.app.views.downloads import DownloadButton

__all__ = ["DAYS", "PAGE_SIZE", "GridView"]

DAYS = 30
PAGE_SIZE = 50
"""Machines a page: each row stays tall enough to click and read (18 px)."""
_ROW_PX = 18


class GridView:
    """One page of machines × days; `open_machine(vm_name)` is awaited when a cell is clicked."""

    def __init__(
        self,
        api: DashboardApi,
        schedule: Callable[[Callable[[], Awaitable[None]]], None],
        open_machine: Callable[[str], Awaitable[None]],
    ) -> None:
        self.api = api
        self.schedule = schedule
        self.open_machine = open_machine
        self.offset = 0
        self.total = 0
        self._asked = 0
        self.source = ColumnDataSource(grid_columns({})[2], name="grid-cells")
        self.search = TextInput(placeholder="Search VM or repository", width=360, css_classes=["grid-search"])
        self.previous = Button(label="◀ Previous", width=110, disabled=True, name="grid-previous")
        self.next = Button(label="Next ▶", width=110, disabled=True, name="grid-next")
        self.info = Div(text="", name="grid-page", css_classes=["grid-page"], margin=(12, 5, 5, 5))
        self.message = message_div("grid-message")
        self.csv = DownloadButton("grid.csv", "Grid (CSV)", "grid-csv", width=110)
        self.csv.point_at(days=DAYS)

        self.chart = figure(
            width=1240,
            frame_height=PAGE_SIZE * _ROW_PX,
            title=f"Outcome per machine and day, the last {DAYS} days (a click opens the machine)",
            x_range=FactorRange(factors=["—"], group_padding=0.4),
            y_range=FactorRange(factors=["—"]),
            x_axis_location="above",
            tools="save",
            toolbar_location="below",
            name="grid-chart",
        )
        cells = self.chart.rect(
            x="x", y="vm_name", width=0.9, height=0.85, color="color", source=self.source,
            nonselection_alpha=1.0, selection_alpha=1.0, selection_line_color="#000000",
        )  # fmt: skip
        self.chart.add_tools(
            TapTool(renderers=[cells]),
            HoverTool(renderers=[cells], tooltips=[("Machine", "@vm_name"), ("Day", "@day"), ("Outcome", "@label")]),
        )
        self.chart.grid.grid_line_color = None
        self.chart.axis.axis_line_color = None
        self.chart.axis.major_tick_line_color = None
        self.chart.xaxis.group_text_font_size = "12px"
        self.chart.yaxis.major_label_text_font_size = "11px"
        self.layout = column(
            row(
                self.search,
                self.previous,
                self.next,
                self.info,
                self.csv.button,
                Div(text=_legend_html(), margin=(10, 5, 5, 15)),
            ),  # fmt: skip
            self.csv.message,
            self.message,
            self.chart,
            name="grid-view",
        )
        self.search.on_change("value_input", lambda _a, _o, _n: self._first_page())
        self.previous.on_click(lambda: self._page(-PAGE_SIZE))
        self.next.on_click(lambda: self._page(PAGE_SIZE))
        self.source.selected.on_change("indices", self._clicked)

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
        search = (self.search.value_input or "").strip()
        try:
            page = await self.api.grid(days=DAYS, limit=PAGE_SIZE, offset=self.offset, search=search)
        except ApiError as exc:
            if asked == self._asked:
                self.message.text = message_html(str(exc), "error")
            return
        if asked != self._asked:
            return
        days, names, cells = grid_columns(page)
        self.total = int(page.get("total", 0))
        self.message.text = "" if self.total or search else message_html("No machines yet.")
        self.source.selected.indices = []
        self.source.data = cells
        self.chart.x_range.factors = days or ["—"]
        self.chart.y_range.factors = names or ["—"]
        self.chart.frame_height = max(len(names), 3) * _ROW_PX
        self.info.text = page_text(self.offset, len(names), self.total)
        self.previous.disabled = self.offset == 0
        self.next.disabled = self.offset + len(names) >= self.total
        self.csv.point_at(days=DAYS, search=search or None)

    def _clicked(self, _attr: str, _old: list[int], new: list[int]) -> None:
        names = self.source.data["vm_name"]
        if new and 0 <= new[0] < len(names):
            self.schedule(partial(self.open_machine, names[new[0]]))

    def clear_selection(self) -> None:
        """After the dialog closes: the same cell can be clicked again."""
        self.source.selected.indices = []


def _legend_html() -> str:
    swatch = (
        "<span style='display:inline-block;width:12px;height:12px;background:{};border:1px solid #ccc;"
        "vertical-align:-1px;margin:0 4px 0 10px'></span>{}"
    )
    return "".join(swatch.format(OUTCOME_COLORS[o], OUTCOME_LABELS[o]) for o in OUTCOME_COLORS)
