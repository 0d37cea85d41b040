"""Dialog tab Performance: job selector, the selected job's figures, its speed-over-time chart; and across the
machine's finished jobs, the size of each (bars, to compare) and the bytes moved so far (an area)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from bokeh.layouts import column, row
from bokeh.models import Button, ColumnDataSource, CustomJS, CustomJSTickFormatter, Div, HoverTool, Select
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from dashboards.app.client import ApiError, DashboardApi
from dashboards.app.estate_shaping import cumulative_columns, size_bar_columns
from dashboards.app.shaping import (
    disk_columns,
    disk_patch,
    eta_text,
    format_duration,
    job_options,
    merge_disks,
    merge_live,
    performance_figures,
    phase_bands,
    speed_columns,
    stream_tail,
)
from dashboards.app.views.common import cards_html, message_html

__all__ = ["REFRESH_MS", "PerformanceView"]

DISK_LOOK_EVERY = 10
"""A live job shown without a disk chart has its disks looked for again every this many refreshes."""

REFRESH_MS = 3000
# A running job's chart is capped like the API's live chart (LIVE_CHART_POINTS) with margin.
ROLLOVER = 5000

_MMSS = "const s = Math.max(0, Math.floor(tick)); return Math.floor(s / 60) + ':' + String(s % 60).padStart(2, '0');"

_CSV = """
const d = source.data;
const rows = ['t_seconds,time,speed_mbps,progress_percent,phase'];
for (let i = 0; i < d.t.length; i++) {
  const phase = '"' + String(d.phase[i]).replace(/"/g, '""') + '"';
  rows.push([d.t[i], d.time[i], d.mbps[i], d.progress[i], phase].join(','));
}
const blob = new Blob([rows.join('\\n') + '\\n'], {type: 'text/csv'});
const link = document.createElement('a');
link.href = URL.createObjectURL(blob);
link.download = (select.value || 'job') + '-telemetry.csv';
document.body.appendChild(link);
link.click();
link.remove();
"""


class PerformanceView:
    """Shows one job at a time; `refresh()` (every REFRESH_MS) follows it while its data is live."""

    def __init__(self, api: DashboardApi, schedule: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
        self.api = api
        self.schedule = schedule
        self.job_id: str | None = None
        self.live = False
        self.cursor: str | None = None
        """The last live answer's cursor: a refresh asks only for the points after it."""
        self.kept: list[dict] = []
        self.disk_cursor: str | None = None
        """The last live disk answer's cursor: a refresh asks only for each disk's points after it."""
        self.kept_disks: dict[int, list[dict]] = {}
        self.refreshes = 0
        self.speed = ColumnDataSource(speed_columns([]), name="speed-source")
        self.bands = ColumnDataSource(phase_bands([]), name="phase-bands")

        self.chart = figure(
            width=860,
            height=300,
            title="Transfer speed",
            x_axis_label="Elapsed time (mm:ss)",
            y_axis_label="Speed (MB/s)",
            tools="pan,xwheel_zoom,box_zoom,reset,save",
            name="speed-chart",
        )
        self.chart.vstrip(x0="left", x1="right", color="color", alpha=0.15, legend_field="phase", source=self.bands)
        line = self.chart.line("t", "mbps", source=self.speed, line_width=2, color="#2166ac")
        self.chart.xaxis.formatter = CustomJSTickFormatter(code=_MMSS)
        # Ticks a second apart at least: finer ones all read "0:00" in mm:ss.
        self.chart.xaxis.ticker.min_interval = 1
        self.chart.y_range.start = 0
        self.chart.legend.location = "top_right"
        self.chart.legend.title = "Phase"
        self.chart.add_tools(
            HoverTool(
                renderers=[line],
                mode="vline",
                tooltips=[
                    ("Time", "@time"),
                    ("Speed", "@mbps{0.00} MB/s"),
                    ("Progress", "@progress{0.0} %"),
                    ("Phase", "@phase"),
                ],
            )
        )

        self.select = Select(title="Job (timestamp – type)", options=[], value="", width=420, name="job-select")
        self.figures = Div(text="", name="perf-figures", sizing_mode="stretch_width")
        self.state = Div(text="", name="perf-state", sizing_mode="stretch_width")
        self.download = Button(label="Download telemetry (CSV)", width=200, name="csv-download")
        self.download.js_on_click(CustomJS(args={"source": self.speed, "select": self.select}, code=_CSV))
        self.select.on_change("value", lambda _attr, _old, new: self.schedule(partial(self.show, new)))

        # Each disk's curve of a multi-disk job, one line a disk (shown only when there are two or more).
        self.disks = ColumnDataSource(disk_columns([]), name="disk-source")
        self.disk_chart = figure(
            width=860,
            height=240,
            title="Speed per disk",
            x_axis_label="Elapsed time (mm:ss)",
            y_axis_label="Speed (MB/s)",
            tools="pan,xwheel_zoom,box_zoom,reset,save",
            name="disk-chart",
            visible=False,
        )
        self.disk_chart.multi_line("xs", "ys", color="color", legend_field="label", line_width=2, source=self.disks)
        self.disk_chart.xaxis.formatter = CustomJSTickFormatter(code=_MMSS)
        self.disk_chart.xaxis.ticker.min_interval = 1
        self.disk_chart.legend.location = "top_right"
        self.disk_chart.x_range = self.chart.x_range  # zoom one, zoom both

        # Across jobs (from the machine's trend, not the selected job): each one's size, and the running total.
        self.sizes = ColumnDataSource(size_bar_columns([]), name="size-bars")
        self.cumulative = ColumnDataSource(cumulative_columns([]), name="cumulative-bytes")
        self.size_chart = figure(
            width=860,
            height=220,
            title="Size per job (finished jobs, oldest first)",
            x_axis_label="Job",
            y_axis_label="Size (MB)",
            tools="xpan,xwheel_zoom,box_zoom,reset,save",
            name="size-bars-chart",
        )
        bars = self.size_chart.vbar(x="n", top="size_mb", width=0.8, color="color", source=self.sizes)
        self.size_chart.add_tools(
            HoverTool(
                renderers=[bars],
                tooltips=[("Job", "@created_label – @type"), ("Status", "@status"), ("Size", "@size_label")],
            )
        )
        self.size_chart.y_range.start = 0
        self.size_chart.xaxis.ticker.min_interval = 1
        self.cumulative_chart = figure(
            width=860,
            height=220,
            title="Data moved, cumulative (finished jobs)",
            x_axis_type="datetime",
            x_axis_label="Job created (UTC)",
            y_axis_label="Cumulative (GB)",
            tools="xpan,xwheel_zoom,box_zoom,reset,save",
            name="cumulative-chart",
        )
        self.cumulative_chart.varea(
            x="created", y1="zero", y2="cumulative_gb", source=self.cumulative, color="#4393c3", alpha=0.35
        )
        edge = self.cumulative_chart.line("created", "cumulative_gb", source=self.cumulative, color="#2166ac")
        self.cumulative_chart.add_tools(
            HoverTool(renderers=[edge], mode="vline", tooltips=[("Job", "@created_label"), ("So far", "@total_label")])
        )
        self.cumulative_chart.y_range.start = 0
        self.layout = column(
            row(self.select, self.download),
            self.figures,
            self.state,
            self.chart,
            self.disk_chart,
            self.size_chart,
            self.cumulative_chart,
        )

    async def load(self, machine: dict) -> None:
        """A newly opened machine: its size bars and cumulative area; its jobs newest first, the newest shown."""
        trend = machine.get("trend") or []
        self.sizes.data = size_bar_columns(trend)
        self.cumulative.data = cumulative_columns(trend)
        # Until a job has finished there is nothing to compare: no empty frames under the speed chart.
        self.size_chart.visible = self.cumulative_chart.visible = bool(self.sizes.data["n"])
        options = job_options(machine.get("backups") or [])
        self.select.options = options
        if not options:
            self.job_id = None
            self._clear(message_html("This machine has no jobs yet.", "info"))
            return
        newest = options[0][0]
        if self.select.value == newest:
            await self.show(newest)
        else:
            self.select.value = newest  # the "value" callback shows it

    async def show(self, job_id: str) -> None:
        self.job_id = job_id or None
        if not self.job_id:
            self._clear("")
            return
        try:
            history = await self.api.history(job_id)
            disks = await self.api.disk_history(job_id)
        except ApiError as exc:
            self.live = False
            self._clear(message_html(str(exc), "error"))
            return
        if job_id == self.job_id:  # not another job chosen meanwhile
            history, self.cursor = merge_live(None, history)
            self.kept = history.get("chart_data") or []
            self._render(history, replace=True)
            self._render_disks(disks, replace=True)

    async def refresh(self) -> None:
        """Periodic: re-read a live job; stream new points, or switch to the rolled-up data once it exists."""
        job_id = self.job_id
        if not (self.live and job_id):
            return
        try:
            # Only the points after the last answer's (the API keeps the chart); disks only if it has any.
            history = await self.api.history(job_id, self.cursor)
            self.refreshes += 1
            # A job's disks usually report from its start: look again now and then for late ones.
            look = self.disk_chart.visible or self.refreshes % DISK_LOOK_EVERY == 0
            disks = await self.api.disk_history(job_id, self.disk_cursor) if look else None
        except ApiError as exc:
            self.state.text = message_html(f"{exc} Retrying in {REFRESH_MS // 1000} s.", "error")
            return
        if job_id == self.job_id:
            history, self.cursor = merge_live(self.kept, history)
            self.kept = history.get("chart_data") or []
            self._render(history, replace=False)
            if disks is not None:
                self._render_disks(disks, replace=False)

    def _render_disks(self, answer: dict, *, replace: bool) -> None:
        """Draw a disk answer: whole on selection; on a refresh only the disks with new points are sent
        to the browser (a patch of their lines), unless the disks themselves changed."""
        answer, self.disk_cursor = merge_disks(None if replace else self.kept_disks, answer)
        curves = answer.get("disks") or []
        self.kept_disks = {d["disk_index"]: d.get("chart_data") or [] for d in curves}
        new = disk_columns(curves, Category10_10)
        patch = None if replace else disk_patch(dict(self.disks.data), new)
        if patch is None:
            self.disks.data = new
        elif patch:
            self.disks.patch(patch)
        self.disk_chart.visible = len(curves) >= 2

    def _clear(self, state_html: str) -> None:
        self.live = False
        self.speed.data = speed_columns([])
        self.bands.data = phase_bands([])
        self.disks.data = disk_columns([])
        self.disk_cursor, self.kept_disks = None, {}
        self.disk_chart.visible = False
        self.figures.text = ""
        self.state.text = state_html

    def _render(self, history: dict, *, replace: bool) -> None:
        figures = performance_figures(history)
        chart = figures["chart"]
        new = speed_columns(chart)
        tail = None if replace else stream_tail(dict(self.speed.data), new)
        if tail is None:
            self.speed.data = new
        elif tail["t"]:
            self.speed.stream(tail, rollover=ROLLOVER)
        self.bands.data = phase_bands(chart)
        self.live = figures["source"] == "live_snapshots"
        running = figures["status"] == "running"
        suffix = " (so far)" if self.live else ""
        if figures["source"] == "none":
            self.figures.text = ""
            self.state.text = message_html(figures["message"] or "No telemetry data available for this job.")
            return
        self.figures.text = cards_html(
            [
                (f"Peak speed{suffix}", _mb(figures["peak_mbps"]), "perf-peak"),
                (f"Average speed{suffix}", _mb(figures["avg_mbps"]), "perf-avg"),
                (f"Duration{suffix}", format_duration(figures["duration_seconds"]), "perf-duration"),
            ]
        )
        progress = figures.get("progress")
        notes = []
        if running:
            done = "" if progress is None else f" — {progress:.1f} % done"
            eta = eta_text(figures)
            notes.append(f"Job is running{done}{'; ' + eta if eta else ''}.")
        elif self.live:
            notes.append(f"Job {figures['status']}; its telemetry is being rolled up (refreshing).")
        else:
            notes.append(f"Job {figures['status']}; rolled-up telemetry, {len(chart)} chart points.")
        if figures.get("bottleneck"):
            kind = "now" if running else "on average"
            notes.append(f"{figures['bottleneck']['text']} ({kind}).")
        if figures.get("anomalies"):
            notes.append("Unusual: " + "; ".join(figures["anomalies"]) + ".")
        if not chart:
            notes.append("No speed samples were recorded.")
        if running:
            notes.append(f"The chart refreshes every {REFRESH_MS // 1000} s.")
        self.state.text = message_html(" ".join(notes))


def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} MB/s"
