"""Alerts from the API → table columns, the page title, per-machine counts and silence requests (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from dashboards.app.shaping import format_time, short_age

__all__ = [
    "RULE_LABELS",
    "SEVERITY_COLORS",
    "SEVERITY_ORDER",
    "SEVERITY_SHORT",
    "SILENCE_DURATIONS",
    "alert_columns",
    "alert_detail_text",
    "count_firing",
    "firing_summary",
    "machine_alert_columns",
    "silence_body",
    "title_text",
]

SEVERITY_ORDER = ("critical", "warning", "info")
# (background, text) of each severity's badge: red, amber, blue; amber takes dark text to stay readable.
SEVERITY_COLORS: dict[str, tuple[str, str]] = {
    "critical": ("#c62828", "#ffffff"),
    "warning": ("#f9a825", "#3d2a00"),
    "info": ("#1565c0", "#ffffff"),
}
_UNKNOWN_COLORS = ("#757575", "#ffffff")
# What a table cell 60 px wide has room for; its tooltip says the whole word.
SEVERITY_SHORT = {"critical": "crit", "warning": "warn", "info": "info"}
RULE_LABELS: dict[str, str] = {
    "job_failed": "Job failed",
    "job_anomalous": "Unusual job",
    "rpo": "RPO overdue",
    "job_overrunning": "Job overrunning",
    "job_stalled": "Job stalled",
    "job_pending_too_long": "Pending too long",
    "never_backed_up": "Never backed up",
    "rollup_set_aside": "Rollup set aside",
    "pipeline_unhealthy": "Pipeline unhealthy",
}
# (seconds, label) for the silence form, as a Select's options want them (values are strings).
SILENCE_DURATIONS: list[tuple[str, str]] = [
    ("3600", "1 hour"),
    ("14400", "4 hours"),
    ("86400", "1 day"),
    ("259200", "3 days"),
    ("604800", "1 week"),
]


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _ago(moment: str | None, now: datetime) -> str:
    start = _moment(moment)
    if start is None:
        return "—"
    seconds = (now - start).total_seconds()
    return "<1m" if seconds < 60 else short_age(seconds)


def alert_columns(alerts: Sequence[dict], now: datetime) -> dict[str, list]:
    """The alerts tables' rows, in the API's order (firing first, then critical, warning, info, newest start).

    `now` (aware) dates "for 3h 10m" and "resolved 25m ago"; every text is the API's or ours, escaped by the
    table's templates.
    """
    acks = [a.get("acknowledgement") or {} for a in alerts]
    colors = [SEVERITY_COLORS.get(a.get("severity") or "", _UNKNOWN_COLORS) for a in alerts]
    return {
        "id": [int(a["id"]) for a in alerts],
        "vm_name": [a.get("vm_name") or "" for a in alerts],
        "severity": [(a.get("severity") or "").upper() for a in alerts],
        "sev_bg": [bg for bg, _ in colors],
        "sev_fg": [fg for _, fg in colors],
        "state": [a.get("state") or "" for a in alerts],
        "rule": [RULE_LABELS.get(a.get("rule") or "", a.get("rule") or "") for a in alerts],
        "machine": [a.get("vm_name") or "pipeline" for a in alerts],
        "summary": [a.get("summary") or "" for a in alerts],
        "since": [format_time(a.get("started_at"))[:16] for a in alerts],
        "since_detail": [
            f"for {_ago(a.get('started_at'), now)}"
            if a.get("state") == "firing"
            else f"resolved {_ago(a.get('resolved_at'), now)} ago"
            for a in alerts
        ],
        "ack_by": [f"{ack['by']} · {format_time(ack.get('at'))[5:16]}" if ack else "" for ack in acks],
        "ack_comment": [ack.get("comment") or "" for ack in acks],
        "silenced": ["silenced" if a.get("silenced") else "" for a in alerts],
    }


def alert_detail_text(alert: dict, now: datetime) -> tuple[str, str]:
    """(heading, the rest) of the alert being acted on: "CRITICAL · Job failed · pgtest1" and its whole story."""
    subject = alert.get("vm_name") or "the pipeline"
    rule = RULE_LABELS.get(alert.get("rule") or "", alert.get("rule") or "")
    heading = f"{(alert.get('severity') or '').upper()} · {rule} · {subject}"
    summary = (alert.get("summary") or "").strip()
    parts = [summary if not summary or summary.endswith((".", "!", "?")) else f"{summary}."]
    if alert.get("state") == "firing":
        parts.append(f"Firing since {format_time(alert.get('started_at'))} UTC ({_ago(alert.get('started_at'), now)}).")
    else:
        parts.append(f"Resolved at {format_time(alert.get('resolved_at'))} UTC.")
    ack = alert.get("acknowledgement")
    if ack:
        said = f": “{ack['comment']}”" if ack.get("comment") else ""
        parts.append(f"Acknowledged by {ack['by']} at {format_time(ack.get('at'))} UTC{said}.")
    if alert.get("silenced"):
        parts.append("Silenced: it notifies nobody while the silence lasts.")
    return heading, " ".join(p for p in parts if p)


def title_text(firing: Mapping[str, int], base: str = "Sendense Telemetry") -> str:
    """The browser tab's title: "(2 critical, 3 warning) Sendense Telemetry"; just `base` when nothing fires."""
    counts = [f"{firing[s]} {s}" for s in SEVERITY_ORDER if firing.get(s)]
    return f"({', '.join(counts)}) {base}" if counts else base


def count_firing(alerts: Iterable[dict]) -> dict[str, dict[str, int]]:
    """Firing alerts per machine and severity: {"pgtest1": {"critical": 1, "warning": 0, "info": 0}}."""
    counts: dict[str, dict[str, int]] = {}
    for alert in alerts:
        vm, severity = alert.get("vm_name"), alert.get("severity")
        if alert.get("state") != "firing" or not vm or severity not in SEVERITY_ORDER:
            continue
        counts.setdefault(vm, dict.fromkeys(SEVERITY_ORDER, 0))[severity] += 1
    return counts


def firing_summary(counts: Mapping[str, int] | None) -> tuple[int, str, str]:
    """(how many fire, the worst severity or "", a tooltip "2 firing alerts: 1 critical, 1 warning")."""
    counts = counts or {}
    total = sum(counts.get(s, 0) for s in SEVERITY_ORDER)
    worst = next((s for s in SEVERITY_ORDER if counts.get(s)), "")
    if not total:
        return 0, "", "No alert is firing"
    split = ", ".join(f"{counts[s]} {s}" for s in SEVERITY_ORDER if counts.get(s))
    return total, worst, f"{total} firing alert{'' if total == 1 else 's'}: {split}"


def machine_alert_columns(vm_names: Sequence[str], firing: Mapping[str, Mapping[str, int]]) -> dict[str, list]:
    """The machines table's alert column for the machines shown: count, worst severity, its colours, tooltip."""
    summaries = [firing_summary(firing.get(vm)) for vm in vm_names]
    colors = [SEVERITY_COLORS.get(worst, _UNKNOWN_COLORS) for _, worst, _ in summaries]
    return {
        "alerts": [total for total, _, _ in summaries],
        "alerts_worst": [SEVERITY_SHORT.get(worst, worst) for _, worst, _ in summaries],
        "alerts_bg": [bg for bg, _ in colors],
        "alerts_fg": [fg for _, fg in colors],
        "alerts_tip": [tip for _, _, tip in summaries],
    }


def silence_body(
    alert: dict, *, machine: bool, rule: bool, duration_seconds: int, reason: str, by: str
) -> dict[str, Any]:
    """POST /silences for this alert's machine and/or rule; ValueError with a sentence for the form otherwise."""
    body: dict[str, Any] = {"duration_seconds": int(duration_seconds), "created_by": by}
    if machine and alert.get("vm_name"):
        body["vm_name"] = alert["vm_name"]
    if rule:
        body["rule"] = alert["rule"]
    if "vm_name" not in body and "rule" not in body:
        raise ValueError("Choose what to silence: this machine, this rule, or both.")
    if not reason.strip():
        raise ValueError("Say why it is silenced: the reason is kept with the silence.")
    body["reason"] = reason.strip()
    return body
