"""Pure: each rule, from the facts it needs, to the conditions it finds (key → Condition, or None when clear).

Every time here is on the server's clock but for durations of runs, which are on the agent's (see the
README's "Two clocks"): silence (stalled, pending) is judged from `last_seen_at` and `progress_seen_at`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from pipeline.alerts.vocabulary import Condition, RuleConfig

__all__ = [
    "Configs",
    "FinishedPair",
    "HealthFacts",
    "MachineFacts",
    "RunningJob",
    "SetAsideJob",
    "alert_key",
    "job_failed",
    "job_anomalous",
    "job_overrunning",
    "job_pending_too_long",
    "job_stalled",
    "never_backed_up",
    "pipeline_unhealthy",
    "rollup_set_aside",
    "rpo",
]

Configs = Callable[[str, str | None], RuleConfig]
"""The effective configuration of a rule for a machine (None: the pipeline's own rules)."""


def alert_key(rule: str, *parts: str) -> str:
    """One alert per key: the rule and its subject (a machine, a machine's job type, a job, a component)."""
    return ":".join((rule, *parts))


def _minutes(seconds: float) -> str:
    """A duration as a reader says it: 40 s, 12 min, 26.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


@dataclass(frozen=True, slots=True)
class MachineFacts:
    """A known machine: its objective, last success, and since when it is known (server clock)."""

    vm_name: str
    rpo_seconds: int
    last_success_at: datetime | None
    known_since: datetime


@dataclass(frozen=True, slots=True)
class FinishedPair:
    """A machine's jobs of one job type: the newest that completed or failed, and how many failed in a row."""

    vm_name: str
    job_type: str
    job_id: str
    status: str
    error_message: str | None
    consecutive_failures: int
    anomalies: Sequence[dict] = ()
    """The anomaly flags of the newest rolled-up completed run (its own sentences)."""
    anomalous_job_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A pending or running job as the silence and overrun rules see it."""

    job_id: str
    vm_name: str
    job_type: str
    backup_type: str
    status: str
    created_at: datetime
    elapsed_seconds: float | None
    """Time so far on the agent's clock (see pipeline/read/jobs.py duration_seconds); None if not started."""
    last_seen_at: datetime | None
    progress_seen_at: datetime | None
    usual_durations: Sequence[float] = ()
    """Durations of its machine's last completed runs of this backup type."""
    eta_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SetAsideJob:
    job_id: str
    vm_name: str
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class HealthFacts:
    """For the pipeline's own health: since when each component has been failing (None: it is not)."""

    failing_since: dict[str, datetime | None] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)


def rpo(machines: Iterable[MachineFacts], configs: Configs, now: datetime) -> dict[str, Condition | None]:
    """Warning above 1× the objective, critical above `critical_ratio` ×; machines never backed up are
    `never_backed_up`'s."""
    found: dict[str, Condition | None] = {}
    for m in machines:
        key = alert_key("rpo", m.vm_name)
        config = configs("rpo", m.vm_name)
        if not config.enabled or m.last_success_at is None or m.rpo_seconds <= 0:
            found[key] = None
            continue
        age = (now - m.last_success_at).total_seconds()
        ratio = age / m.rpo_seconds
        if ratio <= 1.0:
            found[key] = None
            continue
        critical = ratio > float(config.params.get("critical_ratio", 2.0))
        found[key] = Condition(
            "rpo",
            key,
            "critical" if critical else config.severity,
            f"{m.vm_name}: last successful backup {_minutes(age)} ago, {ratio:.1f}× its RPO of "
            f"{_minutes(m.rpo_seconds)}",
            vm_name=m.vm_name,
            details={"age_seconds": round(age), "rpo_seconds": m.rpo_seconds, "overdue_ratio": round(ratio, 3)},
        )
    return found


def never_backed_up(machines: Iterable[MachineFacts], configs: Configs, now: datetime) -> dict[str, Condition | None]:
    """A known machine without any completed job, longer than its RPO since it became known: coverage."""
    found: dict[str, Condition | None] = {}
    for m in machines:
        key = alert_key("never_backed_up", m.vm_name)
        config = configs("never_backed_up", m.vm_name)
        known = (now - m.known_since).total_seconds()
        if not config.enabled or m.last_success_at is not None or known <= m.rpo_seconds:
            found[key] = None
            continue
        found[key] = Condition(
            "never_backed_up",
            key,
            config.severity,
            f"{m.vm_name} has never been backed up successfully, {_minutes(known)} after it was registered "
            f"(RPO {_minutes(m.rpo_seconds)})",
            vm_name=m.vm_name,
            details={"known_seconds": round(known), "rpo_seconds": m.rpo_seconds},
        )
    return found


def job_failed(pairs: Iterable[FinishedPair], configs: Configs) -> dict[str, Condition | None]:
    """The newest completed-or-failed job of a machine and job type failed; a later completed one clears it."""
    found: dict[str, Condition | None] = {}
    for p in pairs:
        key = alert_key("job_failed", p.vm_name, p.job_type)
        config = configs("job_failed", p.vm_name)
        if not config.enabled or p.status != "failed":
            found[key] = None
            continue
        times = "" if p.consecutive_failures <= 1 else f" ({p.consecutive_failures} failures in a row)"
        reason = f": {p.error_message}" if p.error_message else ""
        found[key] = Condition(
            "job_failed",
            key,
            config.severity,
            f"{p.job_type.capitalize()} of {p.vm_name} failed{times}{reason}"[:1000],
            vm_name=p.vm_name,
            job_id=p.job_id,
            job_type=p.job_type,
            details={"consecutive_failures": p.consecutive_failures, "error_message": p.error_message},
        )
    return found


def job_anomalous(pairs: Iterable[FinishedPair], configs: Configs) -> dict[str, Condition | None]:
    """The newest rolled-up completed run of a machine and job type carries anomaly flags."""
    found: dict[str, Condition | None] = {}
    for p in pairs:
        key = alert_key("job_anomalous", p.vm_name, p.job_type)
        config = configs("job_anomalous", p.vm_name)
        if not config.enabled or not p.anomalies or p.anomalous_job_id is None:
            found[key] = None
            continue
        sentences = "; ".join(str(a.get("sentence", a.get("metric", ""))) for a in p.anomalies)
        found[key] = Condition(
            "job_anomalous",
            key,
            config.severity,
            f"{p.job_type.capitalize()} of {p.vm_name} was unusual: {sentences}"[:1000],
            vm_name=p.vm_name,
            job_id=p.anomalous_job_id,
            job_type=p.job_type,
            details={"anomalies": list(p.anomalies)},
        )
    return found


def _window_end(params: dict, now: datetime) -> datetime | None:
    """The next end of the backup window ("HH:MM", UTC) after the job's start, or None without one."""
    raw = params.get("window_end")
    if not raw:
        return None
    hours, minutes = (int(x) for x in str(raw).split(":"))
    end = datetime.combine(now.date(), time(hours, minutes))
    return end if end >= now - timedelta(hours=12) else end + timedelta(days=1)


def job_overrunning(jobs: Iterable[RunningJob], configs: Configs, now: datetime) -> dict[str, Condition | None]:
    """A running job past `factor` × its machine's usual duration (median of its last runs of this backup
    type, at least `min_runs` of them), or whose ETA lies past the backup window's end."""
    found: dict[str, Condition | None] = {}
    for j in jobs:
        key = alert_key("job_overrunning", j.job_id)
        config = configs("job_overrunning", j.vm_name)
        found[key] = None
        if not config.enabled or j.status != "running" or j.elapsed_seconds is None:
            continue
        params = config.params
        runs = list(j.usual_durations)[: int(params.get("runs", 10))]
        factor = float(params.get("factor", 2.0))
        if len(runs) >= int(params.get("min_runs", 3)):
            usual = statistics.median(runs)
            if usual > 0 and j.elapsed_seconds > factor * usual:
                found[key] = Condition(
                    "job_overrunning",
                    key,
                    config.severity,
                    f"{j.job_type.capitalize()} of {j.vm_name} has run {_minutes(j.elapsed_seconds)}, "
                    f"{j.elapsed_seconds / usual:.1f}× its usual {_minutes(usual)}",
                    vm_name=j.vm_name,
                    job_id=j.job_id,
                    job_type=j.job_type,
                    details={"elapsed_seconds": round(j.elapsed_seconds), "usual_seconds": round(usual)},
                )
                continue
        end = _window_end(params, now)
        if end is not None and j.eta_at is not None and j.eta_at > end:
            found[key] = Condition(
                "job_overrunning",
                key,
                config.severity,
                f"{j.job_type.capitalize()} of {j.vm_name} is expected to end at {j.eta_at:%H:%M} UTC, "
                f"after the backup window ends at {end:%H:%M} UTC",
                vm_name=j.vm_name,
                job_id=j.job_id,
                job_type=j.job_type,
                details={"eta_at": j.eta_at.isoformat(), "window_end": end.isoformat()},
            )
    return found


def job_stalled(jobs: Iterable[RunningJob], configs: Configs, now: datetime) -> dict[str, Condition | None]:
    """A running job whose bytes have not advanced for `minutes` while its updates still arrive (a job
    that went silent is the reaper's)."""
    found: dict[str, Condition | None] = {}
    for j in jobs:
        key = alert_key("job_stalled", j.job_id)
        config = configs("job_stalled", j.vm_name)
        limit = float(config.params.get("minutes", 10.0)) * 60
        found[key] = None
        if not config.enabled or j.status != "running" or j.last_seen_at is None or j.progress_seen_at is None:
            continue
        still = (now - j.progress_seen_at).total_seconds()
        if still >= limit and (now - j.last_seen_at).total_seconds() < limit:
            found[key] = Condition(
                "job_stalled",
                key,
                config.severity,
                f"{j.job_type.capitalize()} of {j.vm_name} has transferred nothing for {_minutes(still)} "
                "while its agent still reports",
                vm_name=j.vm_name,
                job_id=j.job_id,
                job_type=j.job_type,
                details={"stalled_seconds": round(still)},
            )
    return found


def job_pending_too_long(jobs: Iterable[RunningJob], configs: Configs, now: datetime) -> dict[str, Condition | None]:
    """A job created but without any telemetry for `minutes`."""
    found: dict[str, Condition | None] = {}
    for j in jobs:
        key = alert_key("job_pending_too_long", j.job_id)
        config = configs("job_pending_too_long", j.vm_name)
        waited = (now - j.created_at).total_seconds()
        if not config.enabled or j.status != "pending" or waited < float(config.params.get("minutes", 30.0)) * 60:
            found[key] = None
            continue
        found[key] = Condition(
            "job_pending_too_long",
            key,
            config.severity,
            f"{j.job_type.capitalize()} of {j.vm_name} was created {_minutes(waited)} ago and has sent no telemetry",
            vm_name=j.vm_name,
            job_id=j.job_id,
            job_type=j.job_type,
            details={"pending_seconds": round(waited)},
        )
    return found


def rollup_set_aside(jobs: Iterable[SetAsideJob], configs: Configs) -> dict[str, Condition | None]:
    """A finished job whose rollup failed too often and was set aside (its raw telemetry is kept)."""
    found: dict[str, Condition | None] = {}
    config = configs("rollup_set_aside", None)
    for j in jobs:
        key = alert_key("rollup_set_aside", j.job_id)
        found[key] = (
            None
            if not config.enabled
            else Condition(
                "rollup_set_aside",
                key,
                config.severity,
                f"The rollup of {j.job_id} ({j.vm_name}) failed {j.attempts} times and was set aside: "
                f"{(j.last_error or 'no error recorded')[:300]}",
                vm_name=j.vm_name,
                job_id=j.job_id,
                details={"attempts": j.attempts},
            )
        )
    return found


_COMPONENTS = {
    "influxdb": "InfluxDB has been unreachable",
    "mysql": "MySQL has been failing group commits",
    "commit_queue": "an API process's commit queue has been full",
}


def pipeline_unhealthy(health: HealthFacts, configs: Configs, now: datetime) -> dict[str, Condition | None]:
    """A store unreachable, or a commit queue full, for longer than `minutes`."""
    config = configs("pipeline_unhealthy", None)
    limit = timedelta(minutes=float(config.params.get("minutes", 5.0)))
    found: dict[str, Condition | None] = {}
    for component, text in _COMPONENTS.items():
        key = alert_key("pipeline_unhealthy", component)
        since = health.failing_since.get(component)
        if not config.enabled or since is None or now - since < limit:
            found[key] = None
            continue
        detail = health.details.get(component)
        found[key] = Condition(
            "pipeline_unhealthy",
            key,
            config.severity,
            f"{text} for {_minutes((now - since).total_seconds())}" + (f": {detail}"[:300] if detail else ""),
            details={"component": component, "failing_since": since.isoformat()},
        )
    return found
