"""API JSON → Bokeh column data and display text: pure functions, tested without a server or a browser."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pipeline.jobs.vocabulary import TERMINAL_STATUSES

__all__ = [
    "BYTES_PER_MB",
    "PHASE_COLORS",
    "disk_columns",
    "disk_patch",
    "donut_columns",
    "eta_text",
    "flag_short",
    "flag_text",
    "format_bytes",
    "format_duration",
    "format_rate",
    "format_time",
    "history_columns",
    "job_label",
    "job_options",
    "machines_columns",
    "mbps",
    "merge_disks",
    "merge_live",
    "mmss",
    "page_text",
    "performance_figures",
    "phase_bands",
    "phase_color",
    "risk_text",
    "rpo_text",
    "short_age",
    "speed_columns",
    "stream_tail",
    "trend_columns",
    "unfinished_text",
]

# The job sheet's chart divides by 1024², and the rollup's *_mbps fields do too: one unit everywhere.
BYTES_PER_MB = 1_048_576

PHASE_COLORS: dict[str, str] = {
    "queued": "#9e9e9e",
    "initializing": "#8c6bb1",
    "snapshot": "#fdae61",
    "snapshotting": "#fdae61",
    "transferring": "#4393c3",
    "finalizing": "#5aae61",
    "completed": "#1a9850",
    "failed": "#d73027",
    "cancelled": "#878787",
}
_OTHER_COLORS = ("#66c2a5", "#e78ac3", "#a6d854", "#ffd92f", "#e5c494", "#b3b3b3")

STATUS_COLORS = {"completed": "#1a9850", "failed": "#d73027", "running": "#4393c3", "cancelled": "#878787"}


def mbps(bps: float | None) -> float:
    """Bytes per second → MB/s (1024²), two decimals; missing speeds count as 0."""
    return round((bps or 0) / BYTES_PER_MB, 2)


def mmss(seconds: float) -> str:
    """Seconds since the job started → "m:ss" (minutes keep counting past 59, as on the job sheet)."""
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def phase_color(phase: str) -> str:
    """A fixed colour per known phase; unknown phases get a stable colour from their name."""
    if phase in PHASE_COLORS:
        return PHASE_COLORS[phase]
    return _OTHER_COLORS[sum(map(ord, phase)) % len(_OTHER_COLORS)]


def speed_columns(chart_data: Sequence[dict]) -> dict[str, list]:
    """The speed line's ColumnDataSource: t (s), MB/s, mm:ss label, progress, phase."""
    return {
        "t": [p["t"] for p in chart_data],
        "mbps": [mbps(p.get("s")) for p in chart_data],
        "time": [mmss(p["t"]) for p in chart_data],
        "progress": [round(float(p.get("p") or 0.0), 1) for p in chart_data],
        "phase": [p.get("phase") or "" for p in chart_data],
    }


def disk_columns(disks: Sequence[dict], palette: Sequence[str] = ("#1f77b4",)) -> dict[str, list]:
    """One line per disk for a multi_line: seconds, MB/s, a colour and "Disk n" for the legend."""
    return {
        "xs": [[p["t"] for p in d.get("chart_data") or []] for d in disks],
        "ys": [[mbps(p.get("s")) for p in d.get("chart_data") or []] for d in disks],
        "color": [palette[i % len(palette)] for i in range(len(disks))],
        "label": [f"Disk {d['disk_index']}" for d in disks],
    }


def phase_bands(chart_data: Sequence[dict]) -> dict[str, list]:
    """One band per run of equal phases, [first t of the run, first t of the next run).

    The last run ends at the last sample, but is at least one second wide so that a phase seen
    once (e.g. the terminal "completed" point) stays visible.
    """
    bands: dict[str, list] = {"left": [], "right": [], "phase": [], "color": []}
    for point in chart_data:
        phase = point.get("phase") or ""
        if bands["phase"] and bands["phase"][-1] == phase:
            continue
        if bands["phase"]:
            bands["right"][-1] = point["t"]
        bands["left"].append(point["t"])
        bands["right"].append(point["t"])
        bands["phase"].append(phase)
        bands["color"].append(phase_color(phase))
    if bands["phase"]:
        last_t = chart_data[-1]["t"]
        bands["right"][-1] = max(last_t, bands["left"][-1] + 1)
    return bands


LIVE_KEPT_POINTS = 2400
"""A watched live chart grows by appended points up to this many, then is read whole (re-bucketed) again."""


def merge_live(kept: list[dict] | None, answer: dict) -> tuple[dict, str | None]:
    """A history answer with its whole chart, and the cursor to ask with next time (None: read whole).

    An answer to `?since=` (it echoes `since`) holds only the points after the cursor: they are added to
    the chart kept from the earlier answers. Any other answer is whole and replaces it. A chart grown
    past `LIVE_KEPT_POINTS` is read whole next time, which the API answers in buckets.
    """
    chart = answer.get("chart_data") or []
    if "since" in answer and kept is not None:
        answer = {**answer, "chart_data": kept + chart}
    whole = answer.get("chart_data") or []
    cursor = answer.get("cursor") if len(whole) <= LIVE_KEPT_POINTS else None
    return answer, cursor


LIVE_DISK_KEPT_POINTS = 400
"""A watched disk curve grows by appended points up to this many (the API's own bound), then all are read
whole (re-bucketed) again."""


def merge_disks(kept: dict[int, list[dict]] | None, answer: dict) -> tuple[dict, str | None]:
    """A disk-history answer with each disk's whole curve, and the cursor to ask with next time (None:
    read whole).

    An answer to `?since=` (it echoes `since`) holds only each disk's points after the cursor's for it:
    they are added to the curves kept from the earlier answers (a disk not kept starts with them). Any
    other answer is whole and replaces them. A curve grown past `LIVE_DISK_KEPT_POINTS` makes the next
    read whole, which the API answers in buckets.
    """
    disks = answer.get("disks") or []
    if "since" in answer and kept is not None:
        disks = [{**d, "chart_data": kept.get(d["disk_index"], []) + (d.get("chart_data") or [])} for d in disks]
        answer = {**answer, "disks": disks}
    longest = max((len(d.get("chart_data") or []) for d in disks), default=0)
    cursor = answer.get("cursor") if longest <= LIVE_DISK_KEPT_POINTS else None
    return answer, cursor


def disk_patch(current: dict[str, list], new: dict[str, list]) -> dict[str, list] | None:
    """The disk lines of `new` that differ from those drawn, as `ColumnDataSource.patch` takes them
    ({} when none does), or None when the disks themselves differ and the caller must replace the data."""
    if current.get("label", []) != new["label"] or current.get("color", []) != new["color"]:
        return None
    changed = [
        i for i in range(len(new["label"])) if current["xs"][i] != new["xs"][i] or current["ys"][i] != new["ys"][i]
    ]
    if not changed:
        return {}
    return {"xs": [(i, new["xs"][i]) for i in changed], "ys": [(i, new["ys"][i]) for i in changed]}


def stream_tail(current: dict[str, list], new: dict[str, list]) -> dict[str, list] | None:
    """The points of `new` after those already drawn, or None when `new` does not extend `current`.

    A live chart grows at its end; when InfluxDB re-buckets a long job the points change, and the
    caller must replace the data instead of streaming.
    """
    have = len(current.get("t", []))
    if have == 0 or len(new["t"]) < have or new["t"][have - 1] != current["t"][-1]:
        return None
    return {key: values[have:] for key, values in new.items()}


def format_bytes(size: float | None) -> str:
    """Human size in 1024 steps (B, KB, MB, GB, TB), one decimal; "—" when unknown."""
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "—"  # unreachable: TB ends the loop


def format_duration(seconds: float | None) -> str:
    """ "1h 02m 03s", "2m 05s", "45s"; "—" when unknown."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def format_rate(rate: float | None) -> str:
    """A success rate as the donut's centre shows it: "92.5%", or "—" before any job has ended."""
    return "—" if rate is None else f"{rate:.1f}%"


def format_time(moment: str | None) -> str:
    """RFC 3339 from the API → "YYYY-MM-DD HH:MM:SS" (UTC, as stored); "—" when missing."""
    if not moment:
        return "—"
    try:
        return datetime.fromisoformat(moment.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return moment


def _epoch_ms(moment: str | None) -> float:
    if not moment:
        return math.nan
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp() * 1000.0


def eta_text(figures: dict) -> str:
    """ "ETA 22:51:03 UTC (in 10m 00s)", or why there is none yet."""
    if figures.get("eta_seconds") is None:
        reason = figures.get("eta_reason")
        return f"no ETA yet ({reason})" if reason else ""
    clock = format_time(figures.get("eta_at"))[11:]
    return f"ETA {clock} UTC (in {format_duration(figures['eta_seconds'])})"


def job_label(job: dict) -> str:
    """The job selector's text: "timestamp – type"."""
    return f"{format_time(job.get('created_at'))} – {job.get('type') or job.get('backup_type') or '?'}"


def job_options(jobs: Iterable[dict]) -> list[tuple[str, str]]:
    """(backup_id, label) for a Select, newest first."""
    ordered = sorted(jobs, key=lambda j: (j.get("created_at") or "", j["backup_id"]), reverse=True)
    return [(j["backup_id"], job_label(j)) for j in ordered]


def page_text(offset: int, shown: int, total: int) -> str:
    """ "Machines 101–200 of 10,000" under the table; "No machines" when the search matches none."""
    if total == 0:
        return "No machines"
    return f"Machines {offset + 1:,}–{offset + shown:,} of {total:,}"


def rpo_text(rpo: dict | None) -> tuple[str, str]:
    """(status, "age / objective") of a machine's RPO, e.g. ("out of RPO", "31h 10m / 24h")."""
    if not rpo:
        return "", ""
    status = "out of RPO" if rpo.get("out_of_rpo") else "within RPO"
    age = rpo.get("age_seconds")
    objective = short_age(rpo.get("rpo_seconds"))
    return status, f"{'never' if age is None else short_age(age)} / {objective}"


def risk_text(risk: dict | None) -> tuple[str, str, str]:
    """(score, level, tooltip) of a machine's failure risk, e.g. ("26%", "high", "high risk, 26 %: 3 of the
    last 10 runs failed; duration grew 40 % over 8 runs"); blanks when the API gave none."""
    if not risk or risk.get("score") is None:
        return "", "", ""
    percent, level = round(100 * float(risk["score"])), str(risk.get("level") or "")
    reasons = "; ".join(risk.get("reasons") or [])
    return f"{percent}%", level, f"{level} risk, {percent} %: {reasons}"


def short_age(seconds: float | None) -> str:
    """A compact age: "45m", "31h 10m", "3d 4h"."""
    if seconds is None:
        return "—"
    minutes = int(seconds) // 60
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {mins:02d}m" if mins else f"{hours}h"
    return f"{mins}m"


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def machines_columns(machines: Sequence[dict]) -> dict[str, list]:
    """The protection-flows table; sizes in MB and rates as numbers, the RPO as status and age."""
    lasts = [m.get("last_backup") or {} for m in machines]
    rpos = [rpo_text(m.get("rpo")) for m in machines]
    risks = [risk_text(m.get("risk")) for m in machines]
    return {
        "rpo_status": [status for status, _ in rpos],
        "rpo_age": [age for _, age in rpos],
        "vm_name": [m["vm_name"] for m in machines],
        "repository_id": [m.get("repository_id") or "" for m in machines],
        "last_type": [f"{last.get('type') or ''} {last.get('job_type') or ''}".strip() for last in lasts],
        "last_status": [last.get("status") or "" for last in lasts],
        "last_time": [format_time(last.get("created_at")) for last in lasts],
        "last_size_mb": [_nan(last.get("bytes_transferred")) / BYTES_PER_MB for last in lasts],
        "success_rate": [_nan(m.get("success_rate")) for m in machines],
        "total_backups": [m.get("total_backups", 0) for m in machines],
        "risk": [score for score, _, _ in risks],
        "risk_level": [level for _, level, _ in risks],
        "risk_tip": [tip for _, _, tip in risks],
    }


def flag_text(anomalies: Sequence[dict] | None) -> str:
    """ "⚠ took 2.4× longer than usual; …" for an unusual run, "" otherwise."""
    return "⚠ " + "; ".join(a["sentence"] for a in anomalies) if anomalies else ""


_FLAG_NAMES = {"duration_seconds": "duration", "bytes_transferred": "data", "avg_speed_bps": "speed"}


def flag_short(anomalies: Sequence[dict] | None) -> str:
    """ "⚠ duration 2.4×, data 0.3× usual": what fits a table cell (the sentences are its tooltip)."""
    if not anomalies:
        return ""
    if not all(a.get("metric") in _FLAG_NAMES and a.get("ratio") is not None for a in anomalies):
        return flag_text(anomalies)
    return "⚠ " + ", ".join(f"{_FLAG_NAMES[a['metric']]} {a['ratio']:.1f}×" for a in anomalies) + " usual"


def history_columns(backups: Sequence[dict]) -> dict[str, list]:
    """The Summary tab's backup history table, newest first."""
    ordered = sorted(backups, key=lambda j: j.get("created_at") or "", reverse=True)
    return {
        "backup_id": [j["backup_id"] for j in ordered],
        "created": [format_time(j.get("created_at")) for j in ordered],
        "type": [j.get("type") or j.get("backup_type") or "" for j in ordered],
        "status": [j.get("status") or "" for j in ordered],
        "size_mb": [_nan(j.get("bytes_transferred")) / BYTES_PER_MB for j in ordered],
        "duration": [format_duration(j.get("duration_seconds")) for j in ordered],
        "avg_speed_mbps": [math.nan if j.get("avg_speed_bps") is None else mbps(j["avg_speed_bps"]) for j in ordered],
        # Unusual runs get a marker and, short, what is unusual about them; the sentences are the tooltip.
        "flags": [flag_short(j.get("anomalies")) for j in ordered],
        "flag_sentences": [flag_text(j.get("anomalies")) for j in ordered],
    }


def donut_columns(successful: int, failed: int) -> dict[str, list]:
    """Wedges of the success/failed donut, clockwise from twelve o'clock; empty before any job ended."""
    total = successful + failed
    data: dict[str, list] = {"label": [], "count": [], "start": [], "end": [], "color": []}
    angle = math.pi / 2
    for label, count, color in (("successful", successful, "#1a9850"), ("failed", failed, "#d73027")):
        if total == 0 or count == 0:
            continue
        sweep = 2 * math.pi * count / total
        data["label"].append(label)
        data["count"].append(count)
        # Bokeh's angles run anticlockwise, so clockwise wedges go from `angle - sweep` to `angle`.
        data["start"].append(angle - sweep)
        data["end"].append(angle)
        data["color"].append(color)
        angle -= sweep
    return data


def trend_columns(trend: Sequence[dict]) -> dict[str, list]:
    """Size (MB) and duration (minutes) per finished job over creation time, coloured by status.

    A running job's size and duration are only what it has done so far: drawn, they read as a
    short, small run. Pending and running jobs are left out (`unfinished_text` says so).
    """
    trend = [j for j in trend if j.get("status") in TERMINAL_STATUSES]
    return {
        "created": [_epoch_ms(j.get("created_at")) for j in trend],
        "created_label": [format_time(j.get("created_at")) for j in trend],
        "type": [j.get("type") or "" for j in trend],
        "status": [j.get("status") or "" for j in trend],
        "size_mb": [_nan(j.get("size_bytes")) / BYTES_PER_MB for j in trend],
        "duration_min": [_nan(j.get("duration_seconds")) / 60 for j in trend],
        "color": [STATUS_COLORS.get(j.get("status") or "", "#9e9e9e") for j in trend],
    }


def unfinished_text(trend: Sequence[dict]) -> str:
    """ "Not in the trends until finished: 1 running job and 2 pending jobs.", or "" when all have ended."""
    running = sum(1 for j in trend if j.get("status") == "running")
    pending = sum(1 for j in trend if j.get("status") not in TERMINAL_STATUSES) - running
    parts = [
        f"{n} {state} job{'' if n == 1 else 's'}" for n, state in ((running, "running"), (pending, "pending")) if n
    ]
    return f"Not in the trends until finished: {' and '.join(parts)}." if parts else ""


def performance_figures(history: dict) -> dict[str, Any]:
    """Peak and average speed (MB/s), duration and state from a history response in any of its modes.

    Rolled up: the summary's own figures (time-weighted average), its bottleneck and anomaly
    sentences. Live: computed from the points so far (a plain mean, labelled "so far" by the view),
    the current progress, the ETA and the current bottleneck.
    """
    source = history.get("data_source")
    figures: dict[str, Any] = {
        "source": source,
        "status": history.get("status"),
        "message": history.get("message") or "",
    }
    figures.update(eta_seconds=history.get("eta_seconds"), eta_at=history.get("eta_at"))
    figures.update(eta_reason=history.get("eta_reason"), bottleneck=history.get("bottleneck"), anomalies=[])
    if source == "rolled_up":
        m = history.get("performance_metrics") or {}
        figures.update(
            peak_mbps=m.get("peak_speed_mbps"),
            avg_mbps=m.get("avg_speed_mbps"),
            duration_seconds=m.get("duration_seconds"),
            progress=(m.get("chart_data") or [{}])[-1].get("p"),
            chart=m.get("chart_data") or [],
            bottleneck=m.get("bottleneck"),
            anomalies=[a["sentence"] for a in m.get("anomalies") or []],
        )
    elif source == "live_snapshots":
        chart = history.get("chart_data") or []
        speeds = [p.get("s") or 0 for p in chart]
        state = history.get("current_state") or {}
        figures.update(
            peak_mbps=mbps(max(speeds)) if speeds else None,
            avg_mbps=mbps(sum(speeds) / len(speeds)) if speeds else None,
            duration_seconds=chart[-1]["t"] if chart else None,
            progress=state.get("progress_percent"),
            chart=chart,
        )
    else:
        figures.update(peak_mbps=None, avg_mbps=None, duration_seconds=None, progress=None, chart=[])
    return figures
