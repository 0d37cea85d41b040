"""Pure: what goes into a report document (estate or one machine), bounded, with every figure as a reader reads it.

A document is made of what pipeline/reports/inputs.py read and nothing else, so its size does not grow with
the estate: the lists are cut (`Listing.omitted` says how many rows a "and K more" line stands for), the
charts are per day of the display time zone (at most 367 bars) or per job of one machine (at most
`MACHINE_JOBS`), and the jobs table of a machine shows its newest `MACHINE_TABLE` jobs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from pipeline.reports.hours import HourFigures
from pipeline.reports.periods import Period

__all__ = [
    "MACHINE_TABLE",
    "DailySeries",
    "EstateDocument",
    "JobSeries",
    "Listing",
    "MachineDocument",
    "daily_series",
    "estate_document",
    "fmt_bytes",
    "fmt_duration",
    "listing",
    "machine_document",
]

MACHINE_TABLE = 50
"""Jobs of a machine's period listed in its table, newest first."""
LISTED = 10
"""Rows of each list of the estate document (failures, slowest, largest, out of RPO, riskiest, unusual)."""


@dataclass(frozen=True, slots=True)
class Listing:
    """The first rows of a list, and how many were left out of it (0: the list is whole)."""

    rows: list
    omitted: int = 0


def listing(rows: Sequence, total: int | None = None, limit: int = LISTED) -> Listing:
    """`rows` cut at `limit`; `total` is how many the list has in all (default: len(rows))."""
    whole = len(rows) if total is None else max(total, len(rows))
    kept = list(rows[:limit])
    return Listing(kept, whole - len(kept))


@dataclass(frozen=True, slots=True)
class DailySeries:
    """Per calendar day of the display time zone, oldest first: jobs by status, bytes protected, success rate."""

    days: list[str] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)
    success_rate: list[float | None] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(self.completed) and not any(self.failed) and not any(self.cancelled) and not any(self.running)


@dataclass(frozen=True, slots=True)
class JobSeries:
    """One machine's jobs of the period, oldest first: what its charts draw."""

    started: list[datetime] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    """When each job was created, in the display time zone (the charts' axis)."""
    duration_minutes: list[float | None] = field(default_factory=list)
    size_gib: list[float] = field(default_factory=list)
    speed_mib_s: list[float | None] = field(default_factory=list)
    status: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EstateDocument:
    title: str
    subtitle: str
    period_text: str
    generated_text: str
    zone: str
    figures: list[tuple[str, str]]
    week_rows: list[tuple[str, str, str, str]]
    sentences: list[str]
    reasons: Listing
    failures: Listing
    slowest: Listing
    largest: Listing
    out_of_rpo: Listing
    riskiest: Listing
    unusual: Listing
    series: DailySeries
    by_hour: list[int] | None


@dataclass(frozen=True)
class MachineDocument:
    title: str
    subtitle: str
    vm_name: str
    period_text: str
    generated_text: str
    zone: str
    figures: list[tuple[str, str]]
    rpo_rows: list[tuple[str, str]]
    risk_level: str
    risk_score: str
    risk_reasons: list[str]
    week_rows: list[tuple[str, str, str, str]]
    sentences: list[str]
    reasons: Listing
    failures: Listing
    jobs: Listing
    series: JobSeries


# --- formatting --------------------------------------------------------------------------------------


def fmt_bytes(value: float | None) -> str:
    """Binary units, as the dashboard shows sizes: 1.5 GiB."""
    if value is None:
        return "–"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"  # pragma: no cover


def fmt_duration(seconds: float | None) -> str:
    """2 h 05 min, 12 min 03 s, 45 s."""
    if seconds is None:
        return "–"
    total = round(float(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _speed(bps: float | None) -> str:
    return "–" if bps is None else f"{float(bps) / 1_048_576:.1f} MiB/s"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} %"


def _count(value: float | None) -> str:
    return "–" if value is None else f"{int(value):,}"


def _local(moment: datetime | None, zone: ZoneInfo, seconds: bool = False) -> str:
    if moment is None:
        return "–"
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return f"{aware.astimezone(zone):%Y-%m-%d %H:%M:%S}" if seconds else f"{aware.astimezone(zone):%Y-%m-%d %H:%M}"


def _period_text(period: Period, zone: ZoneInfo) -> str:
    return f"{_local(period.start, zone)} to {_local(period.end, zone)} ({zone.key})"


_WEEK = (
    ("jobs", "Jobs", _count),
    ("success_rate", "Success rate", _pct),
    ("avg_duration_seconds", "Average duration", fmt_duration),
    ("avg_size_bytes", "Average size", fmt_bytes),
    ("avg_speed_bps", "Average speed", _speed),
)


def _week_rows(week: Mapping) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, label, fmt in _WEEK:
        figure = week["figures"][name]
        if name == "success_rate":
            change = figure.get("change_points")
            text = "–" if change is None else f"{change:+.1f} points"
        else:
            change = figure.get("change_percent")
            text = "–" if change is None else f"{change:+.1f} %"
        rows.append((label, fmt(figure["now"]), fmt(figure["before"]), text))
    return rows


# --- the estate --------------------------------------------------------------------------------------


def _days(period: Period, zone: ZoneInfo) -> list[date]:
    first = period.start.replace(tzinfo=UTC).astimezone(zone).date()
    last = (period.end - timedelta(microseconds=1)).replace(tzinfo=UTC).astimezone(zone).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def daily_series(hours: Mapping[datetime, HourFigures], period: Period, zone: ZoneInfo) -> DailySeries:
    """The period's UTC hours added up per local day (an hour counts on the day its start falls in: exact for
    zones whole hours from UTC)."""
    days = _days(period, zone)
    index = {d: i for i, d in enumerate(days)}
    n = len(days)
    completed, failed, cancelled, running, size = [0] * n, [0] * n, [0] * n, [0] * n, [0] * n
    for hour, f in hours.items():
        i = index.get(hour.replace(tzinfo=UTC).astimezone(zone).date())
        if i is None:
            continue
        completed[i] += f.completed
        failed[i] += f.failed
        cancelled[i] += f.cancelled
        running[i] += f.active
        size[i] += f.bytes_completed
    rates = [None if c + x == 0 else round(100.0 * c / (c + x), 1) for c, x in zip(completed, failed, strict=True)]
    return DailySeries([d.isoformat() for d in days], completed, failed, cancelled, running, size, rates)


NAME_SHOWN = 100
"""Characters of a machine name a table shows (names may have 255): the rest is cut with an ellipsis."""


def _name(name: str) -> str:
    return name if len(name) <= NAME_SHOWN else name[: NAME_SHOWN - 1] + "…"


def _seconds(job: Mapping) -> float | None:
    """The job's duration: given, or from its start (its creation when it never started) to its end."""
    if job.get("duration_seconds") is not None:
        return job["duration_seconds"]
    begin, end = job.get("started_at") or job.get("created_at"), job.get("completed_at")
    return None if begin is None or end is None else (end - begin).total_seconds()


def _job_row(job: Mapping, zone: ZoneInfo) -> dict:
    return {
        "created": _local(job.get("created_at"), zone),
        "vm_name": _name(job.get("vm_name", "")),
        "repository_id": job.get("repository_id", ""),
        "type": job.get("type", ""),
        "status": job.get("status", ""),
        "duration": fmt_duration(_seconds(job)),
        "size": fmt_bytes(job.get("bytes_transferred")),
        "error": job.get("error_message") or "",
        "anomalies": "; ".join(str(a.get("sentence") or a.get("metric") or "") for a in job.get("anomalies") or []),
    }


def estate_document(summary: Mapping, hours: Mapping[datetime, HourFigures], riskiest: Sequence[Mapping],
                    period: Period, zone: ZoneInfo, now: datetime) -> EstateDocument:  # fmt: skip
    """The estate document of `summary` (pipeline/reports/estate.py's answer) and its hours."""
    t = summary["totals"]
    out = summary["out_of_rpo"]
    busiest = summary.get("busiest_hour")
    figures = [
        ("Jobs", _count(t["jobs"])),
        ("Completed", _count(t["completed"])),
        ("Failed", _count(t["failed"])),
        ("Cancelled", _count(t["cancelled"])),
        ("Running or pending", _count(t["running"])),
        ("Success rate", _pct(t["success_rate"])),
        ("Bytes protected", fmt_bytes(t["bytes_protected"])),
        ("Machines with jobs", _count(t["machines"])),
        ("Machines out of RPO now", _count(out["machines"])),
        ("Unusual runs", _count(t["unusual_runs"])),
        ("Busiest hour", "–" if busiest is None else f"{busiest['label']} ({busiest['jobs']:,} jobs)"),
    ]
    reasons = [
        {"reason": r["reason"], "jobs": _count(r["jobs"]), "latest": _local(r["latest_at"], zone)}
        for r in summary["failure_reasons"]
    ]
    overdue = [
        {
            "vm_name": _name(m["vm_name"]),
            "last_success": _local(m["last_success_at"], zone) if m["last_success_at"] else "never",
            "rpo": fmt_duration(m["rpo_seconds"]),
            "overdue": "never backed up" if m["overdue_ratio"] is None else f"{m['overdue_ratio']:.1f} × RPO",
        }
        for m in out["worst"]
    ]
    risky = [
        {
            "vm_name": _name(m["vm_name"]),
            "score": f"{100 * m['risk']['score']:.0f} %",
            "level": m["risk"]["level"],
            "reasons": "; ".join(m["risk"]["reasons"]) or "–",
        }
        for m in riskiest
    ]
    week = summary["week_over_week"]
    return EstateDocument(
        title="Backup report: the estate",
        subtitle=summary["period"]["label"],
        period_text=_period_text(period, zone),
        generated_text=_local(now, zone, seconds=True) + f" ({zone.key})",
        zone=zone.key,
        figures=figures,
        week_rows=_week_rows(week),
        sentences=list(week["sentences"]),
        reasons=listing(reasons),
        failures=listing([_job_row(j, zone) for j in summary["failures"]], t["failed"]),
        slowest=listing([_job_row(j, zone) for j in summary["slowest"]]),
        largest=listing([_job_row(j, zone) for j in summary["largest"]]),
        out_of_rpo=listing(overdue, out["machines"]),
        riskiest=listing(risky),
        unusual=listing([_job_row(j, zone) for j in summary["unusual_runs"]], t["unusual_runs"]),
        series=daily_series(hours, period, zone),
        by_hour=None if busiest is None else list(busiest["by_hour"]),
    )


# --- one machine -------------------------------------------------------------------------------------


def _job_series(jobs_newest_first: Sequence[Mapping], zone: ZoneInfo) -> JobSeries:
    jobs = list(reversed(jobs_newest_first))
    return JobSeries(
        started=[j["created_at"] for j in jobs],
        labels=[_local(j["created_at"], zone)[5:] for j in jobs],
        duration_minutes=[None if j["duration_seconds"] is None else j["duration_seconds"] / 60 for j in jobs],
        size_gib=[j["bytes_transferred"] / 1024**3 for j in jobs],
        speed_mib_s=[None if not j.get("avg_speed_bps") else j["avg_speed_bps"] / 1_048_576 for j in jobs],
        status=[j["status"] for j in jobs],
    )


def machine_document(machine: Mapping, totals: Mapping, jobs: Sequence[Mapping], reasons: Sequence[Mapping],
                     week: Mapping, period: Period, zone: ZoneInfo, now: datetime) -> MachineDocument:  # fmt: skip
    """One machine's document: `jobs` are the period's newest first (at most what was read); `totals` count all."""
    vm = machine["vm_name"]
    rpo = machine["rpo"]
    risk = machine["risk"]
    figures = [
        ("Jobs", _count(totals["jobs"])),
        ("Completed", _count(totals["completed"])),
        ("Failed", _count(totals["failed"])),
        ("Cancelled", _count(totals["cancelled"])),
        ("Running or pending", _count(totals["running"])),
        ("Success rate", _pct(totals["success_rate"])),
        ("Bytes protected", fmt_bytes(totals["bytes_protected"])),
        ("Unusual runs", _count(totals["unusual_runs"])),
    ]
    if rpo["last_success_at"] is None:
        state = "out of RPO: never backed up successfully"
    else:
        state = "out of RPO" if rpo["out_of_rpo"] else "within RPO"
    rpo_rows = [
        ("State now", state),
        ("Objective", f"{fmt_duration(rpo['rpo_seconds'])} ({rpo['rpo_source']})"),
        ("Last successful backup", _local(rpo["last_success_at"], zone) if rpo["last_success_at"] else "never"),
        ("Age of it", fmt_duration(rpo["age_seconds"])),
    ]
    failed = [_job_row({**j, "vm_name": vm}, zone) for j in jobs if j["status"] == "failed"]
    return MachineDocument(
        title=f"Backup report: {vm}",
        subtitle=period.label,
        vm_name=vm,
        period_text=_period_text(period, zone),
        generated_text=_local(now, zone, seconds=True) + f" ({zone.key})",
        zone=zone.key,
        figures=figures,
        rpo_rows=rpo_rows,
        risk_level=risk["level"],
        risk_score=f"{100 * risk['score']:.0f} %",
        risk_reasons=list(risk["reasons"]),
        week_rows=_week_rows(week),
        sentences=list(week["sentences"]),
        reasons=listing(
            [
                {"reason": r["reason"], "jobs": _count(r["jobs"]), "latest": _local(r["latest_at"], zone)}
                for r in reasons
            ]
        ),
        failures=listing(failed, totals["failed"]),
        jobs=listing([_job_row({**j, "vm_name": vm}, zone) for j in jobs], totals["jobs"], MACHINE_TABLE),
        series=_job_series(jobs, zone),
    )
