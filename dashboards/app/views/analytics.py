"""Dialog tab Analytics: success/failed donut with the rate in its centre, totals, week-over-week, trends of
finished jobs."""

from __future__ import annotations

from html import escape

from bokeh.layouts import column, row
from bokeh.models import BasicTickFormatter, ColumnDataSource, Div, HoverTool, Label, Legend, LegendItem
from bokeh.plotting import figure

from dashboards.app.estate_shaping import week_over_week_rows
from dashboards.app.shaping import (
    donut_columns,
    format_bytes,
    format_duration,
    format_rate,
    format_time,
    trend_columns,
    unfinished_text,
)
from dashboards.app.views.common import cards_html, message_html

__all__ = ["AnalyticsView"]


class AnalyticsView:
    """Fills itself from one GET /machines/{vm_name} answer (its kpis and trend)."""

    def __init__(self) -> None:
        self.donut_source = ColumnDataSource(donut_columns(0, 0), name="donut-source")
        self.trend_source = ColumnDataSource(trend_columns([]), name="trend-source")

        self.donut = figure(
            # The plot area itself is square (title, legend and toolbar around it), so the ring is round.
            frame_width=260,
            frame_height=260,
            title="Success / failed",
            x_range=(-1.1, 1.1),
            y_range=(-1.1, 1.1),
            tools="save",
            toolbar_location="below",
            name="success-donut",
        )
        wedges = self.donut.annular_wedge(
            x=0,
            y=0,
            inner_radius=0.55,
            outer_radius=0.95,
            start_angle="start",
            end_angle="end",
            color="color",
            source=self.donut_source,
        )
        # The rate sits in the hole; the Label is a named model so the browser test can read its text.
        self.centre = Label(
            x=0, y=0, text="—", text_align="center", text_baseline="middle", text_font_size="22px", name="donut-centre"
        )
        self.donut.add_layout(self.centre)
        self.donut.add_tools(HoverTool(tooltips=[("", "@label: @count")]))
        self.donut.axis.visible = False
        self.donut.grid.visible = False
        # Below the ring, not over it.
        legend = Legend(
            items=[LegendItem(label={"field": "label"}, renderers=[wedges])],
            orientation="horizontal",
            location="center",
        )
        self.donut.add_layout(legend, "below")

        self.size_chart = self._trend("size_mb", "Size per job", "Size (MB)", "@size_mb{0,0.0} MB")
        self.duration_chart = self._trend(
            "duration_min", "Duration per job", "Duration (min)", "@duration_min{0.0} min"
        )
        self.totals = Div(text="", name="analytics-totals", sizing_mode="stretch_width")
        self.note = Div(text="", name="analytics-note")
        self.unusual = Div(text="", name="analytics-anomalies", sizing_mode="stretch_width")
        self.week = Div(text="", name="analytics-wow", sizing_mode="stretch_width", stylesheets=[_WOW_CSS])
        # Says which jobs the trends leave out, so a running job is not taken for a missing one.
        self.unfinished = Div(text="", name="trend-unfinished")
        self.layout = column(
            self.totals,
            self.note,
            self.week,
            self.unusual,
            row(self.donut, column(self.unfinished, self.size_chart, self.duration_chart)),
        )

    def _trend(self, field: str, title: str, y_label: str, tip: str):
        chart = figure(
            width=540,
            height=210,
            title=title,
            x_axis_type="datetime",
            x_axis_label="Job created (UTC)",
            y_axis_label=y_label,
            tools="pan,box_zoom,reset,save",
            name=f"trend-{field}",
        )
        # "5000000" rather than "5.000e+6", with as many decimals as the ticks need (0.002 min).
        chart.yaxis.formatter = BasicTickFormatter(use_scientific=False)
        chart.line("created", field, source=self.trend_source, color="#bbbbbb")
        dots = chart.scatter("created", field, source=self.trend_source, color="color", size=7)
        chart.add_tools(
            HoverTool(renderers=[dots], tooltips=[("Job", "@created_label – @type"), ("Status", "@status"), ("", tip)])
        )
        return chart

    def update(self, machine: dict) -> None:
        k = machine.get("kpis") or {}
        successful, failed = int(k.get("successful") or 0), int(k.get("failed") or 0)
        self.donut_source.data = donut_columns(successful, failed)
        self.centre.text = format_rate(k.get("success_rate"))
        self.totals.text = cards_html(
            [
                ("Total backups", str(k.get("total_backups", 0)), "an-total"),
                ("Success rate", format_rate(k.get("success_rate")), "an-rate"),
                ("Average size", format_bytes(k.get("average_size_bytes")), "an-size"),
                ("Average duration", format_duration(k.get("average_duration_seconds")), "an-duration"),
            ]
        )
        self.note.text = (
            message_html("No job has completed or failed yet, so there is no success rate.")
            if successful + failed == 0
            else ""
        )
        trend = machine.get("trend") or []
        self.trend_source.data = trend_columns(trend)
        self.unfinished.text = escape(unfinished_text(trend))
        self.unusual.text = anomalies_html(machine.get("anomalies") or [])
        self.week.text = week_over_week_html(machine.get("week_over_week"))
        # An empty Div still takes a line's height: hidden, the charts sit right under the totals.
        for div in (self.note, self.unusual, self.unfinished):
            div.visible = bool(div.text)


_WOW_CSS = """
.wow { border-collapse: collapse; margin: 6px 0 2px; font-size: 13px; }
.wow th, .wow td { padding: 3px 12px; border-bottom: 1px solid #e4e4e4; text-align: right; }
.wow th:first-child, .wow td:first-child { text-align: left; }
.wow th { background: #f3f3f3; font-weight: 600; }
.wow .better { color: #2e7d32; font-weight: 600; } .wow .worse { color: #c62828; font-weight: 600; }
.wow .neutral { color: #333; }
.wow-sentences { margin: 4px 0 0; padding: 6px 12px 6px 28px; background: #fff8e1; border-radius: 4px; }
"""


def week_over_week_html(week: dict | None) -> str:
    """The last 7 days against the 7 before, a row a figure, and the API's sentences for large changes (escaped)."""
    cells = "".join(
        f"<tr class='wow-{r['name']}'><td>{escape(r['label'])}</td><td class='now'>{escape(r['now'])}</td>"
        f"<td class='before'>{escape(r['before'])}</td>"
        f"<td class='change {r['tone']}'>{escape(r['change'])}</td></tr>"
        for r in week_over_week_rows(week)
    )
    sentences = [s for s in (week or {}).get("sentences") or [] if s]
    said = (
        # As the API says them: a machine's name starts some, and is not to be capitalised.
        "<ul class='wow-sentences'>" + "".join(f"<li>{escape(s)}</li>" for s in sentences) + "</ul>"
        if sentences
        else ""
    )
    return (
        "<b>Week over week</b> (the last 7 days against the 7 days before)"
        "<table class='wow'><tr><th></th><th>Last 7 days</th><th>7 days before</th><th>Change</th></tr>"
        f"{cells}</table>{said}"
    )


def anomalies_html(anomalies: list[dict]) -> str:
    """The unusual runs of this machine, newest first, each with what is unusual about it (escaped)."""
    if not anomalies:
        return ""
    items = "".join(
        f"<li class='anomaly'><b>{escape(format_time(a.get('created_at')))} – {escape(str(a.get('type') or ''))}"
        f"</b>: {escape(a['sentence'])} (score {a.get('score', 0):.1f})</li>"
        for a in anomalies[:10]
    )
    return f"<div class='msg info'><b>Unusual runs</b><ul style='margin:4px 0'>{items}</ul></div>"
