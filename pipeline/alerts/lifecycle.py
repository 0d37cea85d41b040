"""Pure: from the alerts stored and the conditions the rules found, the transitions and the notifications.

An alert is one row per key (rule + machine or job), firing or resolved. What is notified is tracked
apart from the state (`notified_state`), and a notification is due when the two disagree:

* firing, and not notified as firing (new, back after a notified resolve, or a silence that ended), or
  notified at a lower severity (escalation): notify "firing";
* resolved, notified as firing, and resolved for at least the hold-down: notify "resolved". An alert
  that fires again within the hold-down was never notified as resolved, so it sends nothing: a
  flapping condition costs one notification pair, not one per flap;
* a silence that matches the alert withholds both (the state still changes and is shown); when it ends
  the disagreement is still there and the notification goes out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pipeline.alerts.vocabulary import Condition, severity_rank

__all__ = ["AlertChange", "LifecyclePlan", "Notice", "Silence", "StoredAlert", "plan_lifecycle"]


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert row as the planner needs it."""

    id: int
    key: str
    rule: str
    state: str
    severity: str
    summary: str
    started_at: datetime
    resolved_at: datetime | None
    notified_state: str | None
    notified_severity: str | None
    vm_name: str | None = None
    notify_seq: int = 0


@dataclass(frozen=True, slots=True)
class Silence:
    """Withholds notifications of alerts of this machine and/or rule (None: any) from `starts_at` to `ends_at`."""

    id: int
    vm_name: str | None
    rule: str | None
    starts_at: datetime
    ends_at: datetime

    def matches(self, rule: str, vm_name: str | None, now: datetime) -> bool:
        return (
            self.starts_at <= now < self.ends_at
            and (self.rule is None or self.rule == rule)
            and (self.vm_name is None or self.vm_name == vm_name)
        )


@dataclass(frozen=True, slots=True)
class Notice:
    """A notification to put in the outbox: `event` firing or resolved, at the alert's severity then."""

    event: str
    severity: str
    seq: int
    """The alert's n-th notification: with its id, the idempotency key every channel carries."""


@dataclass
class AlertChange:
    """What happens to one alert this run. `alert_id` None: a new alert (`condition` says what)."""

    key: str
    alert_id: int | None
    condition: Condition | None
    values: dict = field(default_factory=dict)
    """Columns to set (state, severity, summary, started_at, resolved_at, notified_*, notify_seq, ...)."""
    transitions: list[tuple[str, str, bool]] = field(default_factory=list)
    """(kind, severity, silenced): fired, refired, resolved, escalated, deescalated."""
    notice: Notice | None = None


@dataclass
class LifecyclePlan:
    changes: list[AlertChange] = field(default_factory=list)
    evaluated_ids: list[int] = field(default_factory=list)
    """Stored alerts the rules looked at this run and left unchanged (not written: an open alert is looked at
    in every run, so its last evaluation is the last run's, kept in `alert_evaluations`)."""

    @property
    def notices(self) -> list[tuple[AlertChange, Notice]]:
        return [(c, c.notice) for c in self.changes if c.notice is not None]


_UNACKNOWLEDGED = {"acknowledged_at": None, "acknowledged_by": None, "ack_comment": None}


def _silenced(silences: Iterable[Silence], rule: str, vm_name: str | None, now: datetime) -> bool:
    return any(s.matches(rule, vm_name, now) for s in silences)


def _due(state: str, severity: str, resolved_at: datetime | None, notified_state: str | None,
         notified_severity: str | None, now: datetime, hold_down: timedelta) -> str | None:  # fmt: skip
    if state == "firing":
        if notified_state != "firing":
            return "firing"
        if notified_severity is not None and severity_rank(severity) > severity_rank(notified_severity):
            return "firing"
        return None
    if notified_state == "firing" and resolved_at is not None and now - resolved_at >= hold_down:
        return "resolved"
    return None


def plan_lifecycle(
    stored: Mapping[str, StoredAlert],
    evaluated: Mapping[str, Condition | None],
    silences: Iterable[Silence],
    now: datetime,
    hold_down: timedelta,
) -> LifecyclePlan:
    """Transitions and notifications for every stored alert and every evaluated key.

    `evaluated` maps the keys the rules looked at this run to the condition found (None: looked, and
    clear). A stored alert whose key was not looked at keeps its state; its notifications may still be
    due (a hold-down passed, a silence ended).
    """
    silences = list(silences)
    plan = LifecyclePlan()
    for key in sorted(set(stored) | {k for k, c in evaluated.items() if c is not None}):
        alert, found = stored.get(key), evaluated.get(key)
        change = AlertChange(key, alert.id if alert else None, found)
        if alert is None:
            assert found is not None
            silenced = _silenced(silences, found.rule, found.vm_name, now)
            change.values = {"state": "firing", "severity": found.severity, "summary": found.summary,
                             "started_at": now, "resolved_at": None}  # fmt: skip
            change.transitions.append(("fired", found.severity, silenced))
            state, severity, resolved_at = "firing", found.severity, None
            notified_state = notified_severity = None
            rule, vm_name, seq = found.rule, found.vm_name, 0
        else:
            rule, vm_name, seq = alert.rule, alert.vm_name, alert.notify_seq
            state, severity, resolved_at = alert.state, alert.severity, alert.resolved_at
            notified_state, notified_severity = alert.notified_state, alert.notified_severity
            silenced = _silenced(silences, rule, vm_name, now)
            if key in evaluated:
                if found is not None and state == "resolved":
                    if notified_state == "firing":  # back within the hold-down: the same episode goes on
                        change.transitions.append(("refired", found.severity, silenced))
                        change.values = {"state": "firing", "resolved_at": None}
                    else:  # a new episode: a new start, no acknowledgement
                        change.transitions.append(("fired", found.severity, silenced))
                        change.values = {"state": "firing", "resolved_at": None, "started_at": now, **_UNACKNOWLEDGED}
                    state, resolved_at = "firing", None
                elif found is not None and found.severity != severity:
                    kind = "escalated" if severity_rank(found.severity) > severity_rank(severity) else "deescalated"
                    change.transitions.append((kind, found.severity, silenced))
                elif found is None and state == "firing":
                    change.transitions.append(("resolved", severity, silenced))
                    change.values = {"state": "resolved", "resolved_at": now}
                    state, resolved_at = "resolved", now
                if found is not None and (
                    change.values or found.summary != alert.summary or found.severity != severity
                ):
                    severity = found.severity
                    change.values |= {"severity": found.severity, "summary": found.summary, "details": found.details}
        event = _due(state, severity, resolved_at, notified_state, notified_severity, now, hold_down)
        if event is not None and not silenced:
            change.notice = Notice(event, severity, seq + 1)
            change.values |= {"notified_state": event, "notified_severity": severity, "notify_seq": seq + 1}
        if alert is None:
            change.values["details"] = found.details
        elif key in evaluated:
            plan.evaluated_ids.append(alert.id)
        if change.values or change.notice:
            plan.changes.append(change)
    return plan
