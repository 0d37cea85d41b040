"""The backup-window timeline: every job of a range as a bar from start to end, coloured by status, machines
grouped under their repository; below, on the same time axis, the jobs running at once and their summed speed.

Bounded for 10,000 machines: the API answers at most 7 days and 20,000 bars (the longest, when there are
more; it says how many it left out) and 288 buckets of series; this view draws `ROWS` machines at a time
from that answer (paged here, without asking again) and asks again only for another range or repository.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

from bokeh.layouts import column, row
from bokeh.models import (
    Button,
    ColumnDataSource,
    DatetimeTickFormatter,
    Div,
    FactorRange,
    HoverTool,
    RadioButtonGroup,
    Range1d,
    Select,
    TextInput,
)
from bokeh.plotting import figure

from dashboards.app.client import ApiError, DashboardApi
from dashboards.app.estate_shaping import (
    TIMELINE_RANGES,
    timeline_bar_columns,
    timeline_range,
    timeline_rows,
    timeline_series,
)
from dashboards.app.shaping import STATUS_COLORS
from dashboards.app.views.common import message_div, message_html
from dashboards.app.views.downloads import DownloadButton

__all__ = ["ALL_REPOSITORIES", "ROWS", "TimelineView"]

ROWS = 30
"""Machines drawn at once: enough to compare, few enough to read each name."""
ALL_REPOSITORIES = "All repositories"
_ROW_PX = 22
_WIDTH = 1240


def _times() -> DatetimeTickFormatter:
    # A new one per chart: a model belongs to one document, and every session has its own.
    return DatetimeTickFormatter(hours="%H:%M", days="%b %d", months="%b %d", minutes="%H:%M", hourmin="%H:%M")


class TimelineView:
    """The range chosen, the API's answer for it, and the page of its machines shown."""

    def __init__(
        self,
        api: DashboardApi,
        schedule: Callable[[Callable[[], Awaitable[None]]], None],
        open_machine: Callable[[str], Awaitable[None]],
    ) -> None:
        self.api = api
        self.open_machine = open_machine
        self.schedule = schedule
        self.answer: dict = {"bars": [], "buckets": []}
        self.rows: list[tuple[str, str]] = []
        self.offset = 0
        self._asked = 0
        self.bars = ColumnDataSource(timeline_bar_columns([], []), name="timeline-bars")
        self.series = ColumnDataSource(timeline_series([], None), name="timeline-series")

        self.range = RadioButtonGroup(
            labels=[label for label, _ in TIMELINE_RANGES], active=0, width=250, name="timeline-range"
        )
        self.start = TextInput(placeholder="From (UTC) YYYY-MM-DD HH:MM", width=200, visible=False,
                               css_classes=["timeline-from"])  # fmt: skip
        self.end = TextInput(placeholder="To (UTC) YYYY-MM-DD HH:MM", width=200, visible=False,
                             css_classes=["timeline-to"])  # fmt: skip
        self.show = Button(label="Show", width=70, visible=False, name="timeline-show")
        self.repository = Select(options=[ALL_REPOSITORIES], value=ALL_REPOSITORIES, width=220,
                                 name="timeline-repository", css_classes=["timeline-repository"])  # fmt: skip
        self.previous = Button(label="◀ Previous", width=100, disabled=True, name="timeline-previous")
        self.next = Button(label="Next ▶", width=100, disabled=True, name="timeline-next")
        self.info = Div(text="", name="timeline-info", css_classes=["timeline-info"], margin=(12, 5, 5, 5))
        self.message = message_div("timeline-message")
        self.csv = DownloadButton("timeline.csv", "Timeline (CSV)", "timeline-csv", width=130)

        # The last 24 hours until the first answer, so an unread page shows hours, not microseconds since 1970.
        now = datetime.now(UTC).timestamp() * 1000
        x_range = Range1d(now - 86_400_000, now)
        self.chart = figure(
            width=_WIDTH,
            frame_height=3 * _ROW_PX,
            title="Jobs from start to end (UTC; a click on a job opens its machine)",
            x_axis_type="datetime",
            x_range=x_range,
            y_range=FactorRange(factors=[("", "—")]),
            tools="xpan,xwheel_zoom,box_zoom,reset,save,tap",
            active_scroll="xwheel_zoom",
            toolbar_location="above",
            name="timeline-chart",
        )
        bars = self.chart.hbar(
            y="y",
            left="left",
            right="right",
            height=0.7,
            color="color",
            source=self.bars,
            nonselection_alpha=1.0,
            selection_line_color="#000000",
        )
        self.chart.add_tools(
            HoverTool(
                renderers=[bars],
                tooltips=[
                    ("Machine", "@vm_name"),
                    ("Job", "@backup_id (@kind)"),
                    ("Status", "@status"),
                    ("From", "@start_label"),
                    ("To", "@end_label (@duration)"),
                    ("Speed", "@speed_mbps{0.00} MB/s"),
                ],
            )
        )
        self.chart.xaxis.formatter = _times()
        self.chart.yaxis.group_label_orientation = "horizontal"
        self.chart.yaxis.major_label_text_font_size = "11px"
        self.chart.ygrid.grid_line_color = None

        self.running_chart = self._series_chart(x_range, "running", "Jobs running at once", "Jobs", "#4393c3")
        self.speed_chart = self._series_chart(
            x_range, "speed_mbps", "Summed transfer speed", "MB/s", "#1a9850", tip="@speed_mbps{0,0.00} MB/s"
        )
        self.layout = column(
            row(self.range, self.start, self.end, self.show, self.repository, self.csv.button),
            row(self.previous, self.next, self.info, Div(text=_legend_html(), margin=(12, 5, 5, 15))),
            self.csv.message,
            self.message,
            self.chart,
            self.running_chart,
            self.speed_chart,
            name="timeline-view",
        )
        self.range.on_change("active", lambda _a, _o, _n: self._range_chosen())
        self.show.on_click(lambda: self.schedule(self.load))
        self.repository.on_change("value", lambda _a, _o, _n: self.schedule(self.load))
        self.previous.on_click(lambda: self._page(-ROWS))
        self.next.on_click(lambda: self._page(ROWS))
        self.bars.selected.on_change("indices", self._clicked)

    def _clicked(self, _attr: str, _old: list[int], new: list[int]) -> None:
        """A bar clicked: its machine's dialog."""
        names = self.bars.data["vm_name"]
        if new and 0 <= new[0] < len(names):
            self.schedule(partial(self.open_machine, names[new[0]]))

    def clear_selection(self) -> None:
        self.bars.selected.indices = []

    def _series_chart(self, x_range, field: str, title: str, label: str, color: str, tip: str = ""):
        chart = figure(
            width=_WIDTH,
            height=160,
            title=title,
            x_axis_type="datetime",
            x_range=x_range,  # shared: zooming or panning one moves all three
            y_axis_label=label,
            tools="xpan,xwheel_zoom,box_zoom,reset,save",
            active_scroll="xwheel_zoom",
            toolbar_location="above",
            name=f"timeline-{field}",
        )
        quads = chart.quad(left="left", right="right", bottom=0, top=field, source=self.series, color=color, alpha=0.7,
                            line_color=None)  # fmt: skip
        chart.add_tools(HoverTool(renderers=[quads], tooltips=[("From", "@label"), (label, tip or f"@{field}")]))
        chart.xaxis.formatter = _times()
        chart.y_range.start = 0
        chart.yaxis.ticker.min_interval = 1 if field == "running" else 0.0
        chart.min_border_left = self.chart.min_border_left
        return chart

    def _range_chosen(self) -> None:
        custom = TIMELINE_RANGES[self.range.active][1] is None
        for widget in (self.start, self.end, self.show):
            widget.visible = custom
        if custom and not self.start.value_input:
            # Start from what is shown, so that "Custom" is an edit of it rather than a blank form.
            self.start.value = self.start.value_input = self.answer.get("start", "")[:16].replace("T", " ")
            self.end.value = self.end.value_input = self.answer.get("end", "")[:16].replace("T", " ")
        if not custom:
            self.schedule(self.load)

    async def load(self) -> None:
        """Ask the API for the range (and repository) chosen; show its first page of machines."""
        self._asked += 1
        asked = self._asked
        try:
            start, end = timeline_range(
                self.range.active, self.start.value_input or self.start.value or "",
                self.end.value_input or self.end.value or "", datetime.now(UTC),
            )  # fmt: skip
        except ValueError as exc:
            self.message.text = message_html(str(exc), "error")
            return
        repository = None if self.repository.value == ALL_REPOSITORIES else self.repository.value
        try:
            answer = await self.api.timeline(start, end, repository)
        except ApiError as exc:
            if asked == self._asked:
                self.message.text = message_html(str(exc), "error")
            return
        if asked != self._asked:
            return
        self.answer = answer
        self.rows = timeline_rows(answer.get("bars") or [])
        if repository is None:
            # The repositories of the whole estate's answer are the ones there are to choose from.
            self.repository.options = [ALL_REPOSITORIES, *sorted({repo for repo, _ in self.rows})]
        left_out = int(answer.get("bars_left_out") or 0)
        self.message.text = (
            message_html(
                f"{left_out:,} of the shortest jobs are not drawn (at most 20,000 bars); the series below count "
                "them. Choose a repository or a shorter range to see every job.",
            )
            if left_out
            else ""
        )
        self.series.data = timeline_series(answer.get("buckets") or [], answer.get("end"))
        self.chart.x_range.start = _ms(answer["start"])
        self.chart.x_range.end = _ms(answer["end"])
        self.csv.point_at(from_=answer["start"], to=answer["end"], repository=repository)
        self.offset = 0
        self._show_page()

    def _page(self, step: int) -> None:
        self.offset = max(0, min(self.offset + step, max(len(self.rows) - 1, 0) // ROWS * ROWS))
        self._show_page()

    def _show_page(self) -> None:
        rows = self.rows[self.offset : self.offset + ROWS]
        bars = self.answer.get("bars") or []
        self.bars.data = timeline_bar_columns(bars, rows)
        # A categorical range lists its factors bottom to top: reversed, the first machine is the top row.
        self.chart.y_range.factors = list(reversed(rows)) or [("—", "no jobs in this range")]
        self.chart.frame_height = max(len(rows), 3) * _ROW_PX
        jobs = len(self.bars.data["backup_id"])
        self.info.text = (
            f"Machines {self.offset + 1:,}–{self.offset + len(rows):,} of {len(self.rows):,} · {jobs:,} of "
            f"{len(bars):,} jobs"
            if rows
            else "No jobs in this range"
        )
        self.previous.disabled = self.offset == 0
        self.next.disabled = self.offset + ROWS >= len(self.rows)


def _ms(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp() * 1000.0


def _legend_html() -> str:
    swatch = (
        "<span style='display:inline-block;width:12px;height:12px;background:{};vertical-align:-1px;"
        "margin:0 4px 0 10px'></span>{}"
    )
    return "".join(swatch.format(color, status) for status, color in STATUS_COLORS.items())
