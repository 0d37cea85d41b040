"""Report documents as HTML (Jinja2, autoescaped) with charts drawn by matplotlib, and as PDF (WeasyPrint) from it.

Why these: the HTML is the e-mail's body and the PDF's source, so one template makes both; WeasyPrint lays
out HTML and CSS into PDF without a browser, and matplotlib draws the charts as PNG pictures (Agg, no
display) that both embed as data URIs. Nothing is fetched while rendering: the PDF's URL fetcher refuses
everything but those data URIs, so a name in a report can never make the server load anything.

CPU-bound (a 30-day estate document: about a second): the API calls these in a worker thread.
"""

from __future__ import annotations

import base64
import io
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from matplotlib.figure import Figure

from pipeline.reports.document import DailySeries, EstateDocument, JobSeries, MachineDocument

__all__ = [
    "Chart",
    "ImageSource",
    "data_uri",
    "draw_estate_charts",
    "estate_charts",
    "estate_html",
    "html_to_pdf",
    "machine_charts",
    "machine_html",
    "pdf_filename",
]

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_COLOURS = {"completed": "#2e7d32", "failed": "#c62828", "cancelled": "#9e9e9e", "running": "#1565c0"}
_DPI = 110
ImageSource = Callable[["Chart"], str]
# matplotlib's drawing state (font caches, the Agg renderer) is not documented as thread-safe, and the API renders
# in worker threads: one chart at a time (the GIL would serialise the work anyway).
_DRAWING = threading.Lock()


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart as a PNG picture."""

    title: str
    png: bytes


def data_uri(chart: Chart) -> str:
    """Where a document's <img> finds a chart by default: in itself (the browser's page and the PDF)."""
    return "data:image/png;base64," + base64.b64encode(chart.png).decode("ascii")


def _png(title: str, fig: Figure) -> Chart:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return Chart(title, buffer.getvalue())


def _figure(title: str, ylabel: str) -> tuple[Figure, object]:
    fig = Figure(figsize=(7.2, 2.2), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def _day_ticks(ax, days: Sequence[str]) -> None:
    """At most about 16 labels whatever the period's length, as MM-DD."""
    step = max(1, -(-len(days) // 16))
    ticks = list(range(0, len(days), step))
    ax.set_xticks(ticks, [days[i][5:] for i in ticks], rotation=0)
    ax.set_xlim(-0.6, len(days) - 0.4)


def _scale(values: Sequence[float]) -> tuple[float, str]:
    top = max(values, default=0)
    for divisor, unit in ((1024**4, "TiB"), (1024**3, "GiB"), (1024**2, "MiB")):
        if top >= divisor:
            return divisor, unit
    return 1024, "KiB"


def estate_charts(series: DailySeries, by_hour: Sequence[int] | None) -> list[Chart]:
    """Jobs per day by status, bytes protected per day, the success rate per day, jobs per hour of day."""
    if series.empty:
        return []
    x = list(range(len(series.days)))
    charts = []
    fig, ax = _figure("Jobs per day, by status", "jobs")
    bottom = [0] * len(x)
    for name, values in (("completed", series.completed), ("failed", series.failed),
                         ("cancelled", series.cancelled), ("running", series.running)):  # fmt: skip
        if any(values):
            ax.bar(x, values, bottom=bottom, color=_COLOURS[name], label=name, width=0.8)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.legend(fontsize=7, ncols=4, loc="upper left", frameon=False, bbox_to_anchor=(0, -0.12))
    _day_ticks(ax, series.days)
    charts.append(_png("Jobs per day", fig))

    divisor, unit = _scale(series.bytes)
    fig, ax = _figure("Bytes protected per day (completed jobs)", unit)
    ax.bar(x, [b / divisor for b in series.bytes], color="#00838f", width=0.8)
    _day_ticks(ax, series.days)
    charts.append(_png("Bytes protected per day", fig))

    fig, ax = _figure("Success rate per day (completed ÷ completed + failed)", "%")
    points = [(i, r) for i, r in zip(x, series.success_rate, strict=True) if r is not None]
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, color=_COLOURS["completed"])
    ax.set_ylim(0, 105)
    _day_ticks(ax, series.days)
    charts.append(_png("Success rate per day", fig))

    if by_hour and any(by_hour):
        fig, ax = _figure("Jobs by hour of the day they were created", "jobs")
        ax.bar(range(24), by_hour, color="#6a1b9a", width=0.8)
        ax.set_xticks(range(0, 24, 2), [f"{h:02d}:00" for h in range(0, 24, 2)])
        charts.append(_png("Jobs by hour", fig))
    return charts


def machine_charts(series: JobSeries, zone: str) -> list[Chart]:
    """Duration, size and speed of each job of the period, coloured by status."""
    if not series.started:
        return []
    x = list(range(len(series.started)))
    colours = [_COLOURS.get(s, "#1565c0") for s in series.status]
    labels = [label.replace(" ", "\n") for label in series.labels]
    step = max(1, -(-len(x) // 7))

    def ticks(ax) -> None:
        ax.set_xticks(x[::step], labels[::step], rotation=0)
        ax.set_xlabel(f"job, by the time it was created ({zone})", fontsize=8)

    charts = []
    fig, ax = _figure("Duration per job", "minutes")
    ax.bar(x, [d or 0 for d in series.duration_minutes], color=colours, width=0.8)
    ticks(ax)
    charts.append(_png("Duration per job", fig))
    fig, ax = _figure("Size per job (bytes transferred)", "GiB")
    ax.bar(x, series.size_gib, color=colours, width=0.8)
    ticks(ax)
    charts.append(_png("Size per job", fig))
    speeds = [(i, s) for i, s in zip(x, series.speed_mib_s, strict=True) if s is not None]
    if speeds:
        fig, ax = _figure("Average speed per job", "MiB/s")
        ax.plot([p[0] for p in speeds], [p[1] for p in speeds], marker="o", markersize=3, color="#00838f")
        ax.set_xlim(-0.6, len(x) - 0.4)
        ticks(ax)
        charts.append(_png("Speed per job", fig))
    return charts


def draw_estate_charts(document: EstateDocument) -> list[Chart]:
    with _DRAWING:
        return estate_charts(document.series, document.by_hour)


def estate_html(document: EstateDocument, charts: Sequence[Chart] | None = None, src: ImageSource = data_uri) -> str:
    """The estate document as HTML; `charts` drawn already (default: drawn now), each found at `src(chart)` (an
    e-mail's body refers to them by Content-ID)."""
    drawn = draw_estate_charts(document) if charts is None else charts
    items = [{"title": c.title, "src": src(c)} for c in drawn]
    return _TEMPLATES.get_template("estate.html.j2").render(doc=document, charts=items)


def machine_html(document: MachineDocument) -> str:
    with _DRAWING:
        drawn = machine_charts(document.series, document.zone)
    items = [{"title": c.title, "src": data_uri(c)} for c in drawn]
    return _TEMPLATES.get_template("machine.html.j2").render(doc=document, charts=items)


def html_to_pdf(html: str) -> bytes:
    """The PDF of a document's HTML (its own stylesheet; pictures from data URIs only)."""
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    # The charts' data URIs and nothing else: no file, no network, whatever a document holds.
    return HTML(string=html, url_fetcher=URLFetcher(allowed_protocols={"data"})).write_pdf()


def pdf_filename(kind: str, name: str, day: str) -> str:
    """A download's file name: letters, digits, '.', '_' and '-' of `name` only (a VM name may hold anything)."""
    kept = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)
    safe = re.sub(r"_+", "_", kept).strip("._-") or "machine"
    return f"sendense-{kind}-{safe[:80]}-{day}"
