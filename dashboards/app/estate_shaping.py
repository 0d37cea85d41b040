"""Report answers → Bokeh column data: the timeline's bars and series, the VM × day grid, size bars, the
cumulative area, week-over-week rows. Pure functions, tested without a server or a browser."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from dashboards.app.shaping import BYTES_PER_MB, STATUS_COLORS, format_bytes, format_duration, format_time, mbps
from pipeline.jobs.vocabulary import TERMINAL_STATUSES

__all__ = [
    "MAX_TIMELINE_RANGE",
    "OUTCOME_COLORS",
    "OUTCOME_LABELS",
    "TIMELINE_RANGES",
    "cumulative_columns",
    "day_factor",
    "grid_columns",
    "parse_moment",
    "size_bar_columns",
    "timeline_bar_columns",
    "timeline_range",
    "timeline_rows",
    "timeline_series",
    "week_over_week_rows",
]

OUTCOME_COLORS: dict[str, str] = {
    "success": "#1a9850",
    "warning": "#f0a202",
    "failed": "#d73027",
    "running": "#4393c3",
    "none": "#e6e6e6",
}
OUTCOME_LABELS: dict[str, str] = {
    "success": "success",
    "warning": "success after a failure",
    "failed": "failed",
    "running": "running",
    "none": "no backup",
}
TIMELINE_RANGES: list[tuple[str, timedelta | None]] = [
    ("Last 24 h", timedelta(hours=24)),
    ("Last 7 d", timedelta(days=7)),
    ("Custom", None),
]
_PENDING_COLOR = "#9e9e9e"


def _ms(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp() * 1000.0


def parse_moment(text: str) -> datetime:
    """An operator's "YYYY-MM-DD HH:MM" (UTC, as the dashboard shows times) → aware datetime; ValueError if not."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


MAX_TIMELINE_RANGE = timedelta(days=7)
"""The API's bound (pipeline/reports/timeline.py MAX_RANGE), said here before asking."""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timeline_range(choice: int, start_text: str, end_text: str, now: datetime) -> tuple[str, str]:
    """The API's `from` and `to` (RFC 3339, UTC) for `TIMELINE_RANGES[choice]`; Custom reads the operator's
    two moments. ValueError with what to type instead."""
    length = TIMELINE_RANGES[choice][1]
    if length is not None:
        return _iso(now - length), _iso(now)
    try:
        start, end = parse_moment(start_text), parse_moment(end_text)
    except ValueError:
        raise ValueError("From and To are a date and time, YYYY-MM-DD HH:MM (UTC).") from None
    if not timedelta(0) < end - start <= MAX_TIMELINE_RANGE:
        raise ValueError("To must come after From, at most 7 days after it.")
    return _iso(start), _iso(end)


def timeline_rows(bars: Sequence[dict]) -> list[tuple[str, str]]:
    """Every (repository, machine) with a bar, repository then machine A → Z: the timeline's rows."""
    return sorted({(b.get("repository_id") or "—", b["vm_name"]) for b in bars})


def timeline_bar_columns(bars: Sequence[dict], rows: Sequence[tuple[str, str]]) -> dict[str, list]:
    """The bars of the machines in `rows` (one page of the timeline), for `hbar(y, left, right)`.

    `y` is the nested factor (repository, machine), so the axis groups machines under their repository.
    """
    shown = set(rows)
    picked = [b for b in bars if (b.get("repository_id") or "—", b["vm_name"]) in shown]
    return {
        "y": [(b.get("repository_id") or "—", b["vm_name"]) for b in picked],
        "left": [_ms(b["start"]) for b in picked],
        "right": [_ms(b["end"]) for b in picked],
        "status": [b["status"] for b in picked],
        "color": [STATUS_COLORS.get(b["status"], _PENDING_COLOR) for b in picked],
        "backup_id": [b["backup_id"] for b in picked],
        "vm_name": [b["vm_name"] for b in picked],
        "kind": [f"{b.get('type') or ''} {b.get('job_type') or ''}".strip() for b in picked],
        "start_label": [format_time(b["start"]) for b in picked],
        "end_label": [format_time(b["end"]) for b in picked],
        "duration": [format_duration((_ms(b["end"]) - _ms(b["start"])) / 1000) for b in picked],
        "speed_mbps": [mbps(b.get("avg_speed_bps")) for b in picked],
    }


def timeline_series(buckets: Sequence[dict], end: str | None) -> dict[str, list]:
    """Jobs running at once and their summed speed (MB/s) per bucket, as quads from a bucket's start to the next's."""
    lefts = [_ms(b["start"]) for b in buckets]
    rights = lefts[1:] + ([_ms(end)] if end and lefts else [])
    return {
        "left": lefts,
        "right": rights,
        "mid": [(a + b) / 2 for a, b in zip(lefts, rights, strict=True)],
        "running": [int(b["running"]) for b in buckets],
        "speed_mbps": [mbps(b["speed_bps"]) for b in buckets],
        "label": [format_time(b["start"]) for b in buckets],
    }


def day_factor(day: str) -> tuple[str, str]:
    """An ISO day as the grid's column: (month, day of the month), so the axis names each month once."""
    moment = date.fromisoformat(day)
    return moment.strftime("%b %Y"), f"{moment.day:02d}"


def grid_columns(page: dict) -> tuple[list[tuple[str, str]], list[str], dict[str, list]]:
    """(day factors, machine factors as the y range wants them: top row last, one rect a cell)."""
    days = list(page.get("days") or [])
    machines = page.get("machines") or []
    cells: dict[str, list] = {"x": [], "day": [], "vm_name": [], "outcome": [], "label": [], "color": []}
    for machine in machines:
        for day, outcome in zip(days, machine["cells"], strict=False):
            cells["x"].append(day_factor(day))
            cells["day"].append(day)
            cells["vm_name"].append(machine["vm_name"])
            cells["outcome"].append(outcome)
            cells["label"].append(OUTCOME_LABELS.get(outcome, outcome))
            cells["color"].append(OUTCOME_COLORS.get(outcome, OUTCOME_COLORS["none"]))
    # A categorical y range lists its factors bottom to top: reversed, the first machine is the top row.
    names = [m["vm_name"] for m in machines][::-1]
    return [day_factor(d) for d in days], names, cells


def _finished(trend: Sequence[dict]) -> list[dict]:
    return [j for j in trend if j.get("status") in TERMINAL_STATUSES]


def size_bar_columns(trend: Sequence[dict]) -> dict[str, list]:
    """One bar per finished job, oldest first (x = its number), its size in MB, coloured by status.

    Numbered rather than placed in time: jobs hours or weeks apart are compared side by side, at one width.
    """
    jobs = _finished(trend)
    return {
        "n": list(range(1, len(jobs) + 1)),
        "size_mb": [float(j.get("size_bytes") or 0) / BYTES_PER_MB for j in jobs],
        "size_label": [format_bytes(j.get("size_bytes")) for j in jobs],
        "created_label": [format_time(j.get("created_at")) for j in jobs],
        "type": [j.get("type") or "" for j in jobs],
        "status": [j.get("status") or "" for j in jobs],
        "color": [STATUS_COLORS.get(j.get("status") or "", _PENDING_COLOR) for j in jobs],
    }


def cumulative_columns(trend: Sequence[dict]) -> dict[str, list]:
    """Bytes moved by the finished jobs, summed over creation time (GB, 1024³), for an area under the curve."""
    jobs = _finished(trend)
    total, sums = 0.0, []
    for job in jobs:
        total += float(job.get("size_bytes") or 0)
        sums.append(total / (BYTES_PER_MB * 1024))
    return {
        "created": [_ms(j["created_at"]) for j in jobs],
        "created_label": [format_time(j.get("created_at")) for j in jobs],
        "cumulative_gb": sums,
        "total_label": [format_bytes(s * BYTES_PER_MB * 1024) for s in sums],
        "zero": [0.0] * len(jobs),
    }


_WOW_FIGURES: list[tuple[str, str]] = [
    ("jobs", "Jobs"),
    ("success_rate", "Success rate"),
    ("avg_duration_seconds", "Average duration"),
    ("avg_size_bytes", "Average size"),
    ("avg_speed_bps", "Average speed"),
]


def _figure_text(name: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if name == "jobs":
        return f"{int(value):,}"
    if name == "success_rate":
        return f"{value:.1f} %"
    if name == "avg_duration_seconds":
        return format_duration(value)
    if name == "avg_size_bytes":
        return format_bytes(value)
    return f"{mbps(value):.2f} MB/s"


def _tone(name: str, direction: str) -> str:
    better = _BETTER_WHEN.get(name)
    if better is None or direction not in ("up", "down"):
        return "neutral"
    return "better" if direction == better else "worse"


def _change_text(figure: dict) -> tuple[str, str]:
    """("+38.0 %", "up") / ("−12.5 pts", "down") / ("—", "none") when there was nothing to compare with."""
    if "change_points" in figure:
        change, unit = figure.get("change_points"), "pts"
    else:
        change, unit = figure.get("change_percent"), "%"
    if change is None:
        return "—", "none"
    if change == 0:
        return f"0 {unit}", "same"
    sign = "+" if change > 0 else "−"  # a real minus sign: the hyphen reads as a dash beside numbers
    return f"{sign}{abs(change):.1f} {unit}", "up" if change > 0 else "down"


# Which way is better: a higher success rate and speed, a shorter duration. More jobs or data is neither.
_BETTER_WHEN = {"success_rate": "up", "avg_speed_bps": "up", "avg_duration_seconds": "down"}


def week_over_week_rows(week: dict | None) -> list[dict[str, str]]:
    """Each figure this period and the one before, with its change and whether that is better, worse or
    neither (`tone`): what the Analytics tab's table shows."""
    figures = (week or {}).get("figures") or {}
    rows = []
    for name, label in _WOW_FIGURES:
        figure = figures.get(name) or {}
        change, direction = _change_text(figure)
        rows.append(
            {
                "name": name,
                "label": label,
                "now": _figure_text(name, figure.get("now")),
                "before": _figure_text(name, figure.get("before")),
                "change": change,
                "direction": direction,
                "tone": _tone(name, direction),
            }
        )
    return rows
