"""Reading alerts, silences and rule configurations: the views the API serves (the writes are AlertStore's).

Indexes used: `alerts (state, severity)`, `(vm_name, state)` and `(rule, state)` for the filters and the
firing counts; `alert_transitions (alert_id, id)` and `alert_notifications (alert_id)` for one alert's
history; `alert_silences (ends_at)` for the active silences. A page of alerts is sorted by firing first,
severity, newest start: a sort of the rows matching the filters (one row per alert key, not per job run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, case, func, not_, select, text

from pipeline.alerts.lifecycle import Silence
from pipeline.alerts.store import RuleConfigs, dashboard_link
from pipeline.alerts.vocabulary import CHANNELS, DEFAULT_RULES, SEVERITIES
from pipeline.clock import aware
from pipeline.db.tables import (
    alert_evaluations,
    alert_notifications,
    alert_rule_overrides,
    alert_silences,
    alert_transitions,
    alerts,
)

__all__ = [
    "HISTORY_LIMIT",
    "AlertQuery",
    "alert_rules",
    "get_alert",
    "get_silence",
    "list_alerts",
    "list_silences",
]

HISTORY_LIMIT = 1000
"""Transitions and deliveries shown per alert: the newest this many (an alert flapping for months has more)."""

_NOW = text("SELECT UTC_TIMESTAMP(6)")


@dataclass(frozen=True)
class AlertQuery:
    """A page of alerts: which ones (None: any), how many, from where."""

    state: str | None = None
    severity: str | None = None
    rule: str | None = None
    vm_name: str | None = None
    limit: int = 100
    offset: int = 0


def _active_silences(conn: Connection, now: datetime) -> list[Silence]:
    s = alert_silences.c
    rows = conn.execute(select(alert_silences).where(s.ends_at > now, s.ended_at.is_(None), s.starts_at <= now))
    return [Silence(r.id, r.vm_name, r.rule, r.starts_at, r.ends_at) for r in rows]


def _last_evaluation(conn: Connection) -> datetime | None:
    return conn.execute(select(alert_evaluations.c.last_finished_at).where(alert_evaluations.c.id == 1)).scalar()


def _alert_view(
    row: Row, silences: list[Silence], now: datetime, dashboard_url: str, evaluated: datetime | None = None
) -> dict:
    # An open alert is looked at in every evaluation but written only when it changes: its last evaluation is
    # the last run's.
    last = row.last_evaluated_at
    if evaluated is not None and (row.state == "firing" or row.notified_state == "firing") and evaluated > last:
        last = evaluated
    acknowledgement = None
    if row.acknowledged_at is not None:
        by, comment = row.acknowledged_by, row.ack_comment or ""
        acknowledgement = {"at": aware(row.acknowledged_at), "by": by, "comment": comment}
    return {
        "id": row.id,
        "rule": row.rule,
        "state": row.state,
        "severity": row.severity,
        "vm_name": row.vm_name,
        "job_id": row.job_id,
        "job_type": row.job_type,
        "summary": row.summary,
        "details": row.details if isinstance(row.details, dict) else {},
        "started_at": aware(row.started_at),
        "resolved_at": aware(row.resolved_at),
        "last_evaluated_at": aware(last),
        "silenced": any(s.matches(row.rule, row.vm_name, now) for s in silences),
        "acknowledgement": acknowledgement,
        "dashboard_url": dashboard_link(dashboard_url, row.vm_name),
    }


def list_alerts(engine: Engine, query: AlertQuery, dashboard_url: str) -> dict:
    """A page of alerts, firing first, then by severity (critical first), then the newest start; `total`
    counts every match, `firing` the firing alerts by severity among those of `rule` and `vm_name`."""
    a = alerts.c
    subject = []  # the filters the firing counts keep too
    if query.rule:
        subject.append(a.rule == query.rule)
    if query.vm_name:
        subject.append(a.vm_name == query.vm_name)
    where = [*subject]
    if query.state:
        where.append(a.state == query.state)
    if query.severity:
        where.append(a.severity == query.severity)
    rank = case({name: i for i, name in enumerate(reversed(SEVERITIES))}, value=a.severity, else_=len(SEVERITIES))
    order = (case((a.state == "firing", 0), else_=1), rank, a.started_at.desc(), a.id.desc())
    with engine.connect() as conn:
        now = conn.execute(_NOW).scalar_one()
        total = conn.execute(select(func.count()).select_from(alerts).where(*where)).scalar_one()
        rows = conn.execute(select(alerts).where(*where).order_by(*order).limit(query.limit).offset(query.offset)).all()
        counts = conn.execute(
            select(a.severity, func.count()).where(a.state == "firing", *subject).group_by(a.severity)
        ).all()
        silences = _active_silences(conn, now) if rows else []
        evaluated = _last_evaluation(conn)
    firing = dict.fromkeys(reversed(SEVERITIES), 0) | {r[0]: int(r[1]) for r in counts if r[0] in SEVERITIES}
    return {
        "alerts": [_alert_view(r, silences, now, dashboard_url, evaluated) for r in rows],
        "total": int(total),
        "firing": firing,
    }


def get_alert(engine: Engine, alert_id: int, dashboard_url: str) -> dict | None:
    """One alert with its transitions and its deliveries (each notification on each channel), oldest first."""
    t, n = alert_transitions.c, alert_notifications.c
    with engine.connect() as conn:
        now = conn.execute(_NOW).scalar_one()
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None:
            return None
        transitions = conn.execute(
            select(t.kind, t.severity, t.summary, t.silenced, t.at)
            .where(t.alert_id == alert_id)
            .order_by(t.id.desc())
            .limit(HISTORY_LIMIT)
        ).all()
        deliveries = conn.execute(
            select(
                n.channel,
                n.event,
                n.idempotency_key,
                n.state,
                n.attempts,
                n.last_error,
                n.created_at,
                n.next_attempt_at,
                n.sent_at,
            )
            .where(n.alert_id == alert_id)
            .order_by(n.id.desc())
            .limit(HISTORY_LIMIT)
        ).all()
        silences = _active_silences(conn, now)
        evaluated = _last_evaluation(conn)
    return {
        **_alert_view(row, silences, now, dashboard_url, evaluated),
        "transitions": [
            {
                "kind": r.kind,
                "severity": r.severity,
                "summary": r.summary,
                "silenced": bool(r.silenced),
                "at": aware(r.at),
            }
            for r in reversed(transitions)
        ],
        "deliveries": [
            {
                "channel": r.channel,
                "event": r.event,
                "idempotency_key": r.idempotency_key,
                "state": r.state,
                "attempts": int(r.attempts),
                "last_error": r.last_error,
                "created_at": aware(r.created_at),
                "next_attempt_at": aware(r.next_attempt_at),
                "sent_at": aware(r.sent_at),
            }
            for r in reversed(deliveries)
        ],
    }


# --- silences ----------------------------------------------------------------------------------------


def _silence_view(row: Row, now: datetime) -> dict:
    return {
        "id": row.id,
        "vm_name": row.vm_name,
        "rule": row.rule,
        "starts_at": aware(row.starts_at),
        "ends_at": aware(row.ends_at),
        "reason": row.reason,
        "created_by": row.created_by,
        "created_at": aware(row.created_at),
        "ended_at": aware(row.ended_at),
        "ended_by": row.ended_by,
        "active": row.ended_at is None and row.starts_at <= now < row.ends_at,
    }


def list_silences(engine: Engine, active: bool | None, limit: int = 100, offset: int = 0) -> dict:
    """Silences, newest first: `active` True those in force now, False the others (ended, expired, not
    begun), None all of them; `total` counts every match."""
    s = alert_silences.c
    with engine.connect() as conn:
        now = conn.execute(_NOW).scalar_one()
        in_force = and_(s.ends_at > now, s.ended_at.is_(None), s.starts_at <= now)
        where = [] if active is None else [in_force if active else not_(in_force)]
        total = conn.execute(select(func.count()).select_from(alert_silences).where(*where)).scalar_one()
        rows = conn.execute(
            select(alert_silences).where(*where).order_by(s.id.desc()).limit(limit).offset(offset)
        ).all()
    return {"silences": [_silence_view(r, now) for r in rows], "total": int(total)}


def get_silence(engine: Engine, silence_id: int) -> dict | None:
    with engine.connect() as conn:
        now = conn.execute(_NOW).scalar_one()
        row = conn.execute(select(alert_silences).where(alert_silences.c.id == silence_id)).first()
    return None if row is None else _silence_view(row, now)


# --- rules -------------------------------------------------------------------------------------------


def _override_view(row: Row) -> dict:
    config = row.config if isinstance(row.config, dict) else {}
    return {
        "vm_name": row.vm_name or None,
        **{name: config[name] for name in ("enabled", "severity", "params", "channels") if name in config},
        "updated_by": row.updated_by,
        "updated_at": aware(row.updated_at),
    }


def alert_rules(
    engine: Engine,
    settings_rules: Mapping[str, dict],
    channels: Mapping[str, str],
    minimums: Mapping[str, str],
    only: str | None = None,
) -> dict:
    """Every rule's configuration for every machine (built-in defaults, then settings, then the API's
    override for every machine) with the API's overrides (`vm_name` null: the one for every machine), and
    the channels: configured or not (`channels`: the configured ones), each one's lowest severity."""
    o = alert_rule_overrides.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(alert_rule_overrides)
            .where(*([o.rule == only] if only else []))
            .order_by(o.rule, o.vm_name)  # '' (every machine) sorts first
        ).all()
    configs = RuleConfigs(settings_rules, {(r.rule, r.vm_name): r.config for r in rows})
    rules: list[dict[str, Any]] = []
    for rule in DEFAULT_RULES:
        if only and rule != only:
            continue
        config = configs(rule, None)
        rules.append(
            {
                "rule": rule,
                "enabled": config.enabled,
                "severity": config.severity,
                "params": dict(config.params),
                "channels": None if config.channels is None else list(config.channels),
                "overrides": [_override_view(r) for r in rows if r.rule == rule],
            }
        )
    return {
        "rules": rules,
        "channels": {name: {"configured": name in channels, "min_severity": minimums[name]} for name in CHANNELS},
    }
