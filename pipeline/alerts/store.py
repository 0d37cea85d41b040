"""AlertStore: the one writer of the alert tables (alerts, transitions, outbox, silences, overrides, the claim).

Evaluation: `claim_evaluation()` locks the one `alert_evaluations` row (FOR UPDATE SKIP LOCKED): one
scheduler evaluates at a time, the others skip that run. Every change it makes (the alert's row, its
transitions, its notifications in the outbox) commits in that same transaction, so a notification is
enqueued exactly once per transition whatever is killed when.

Delivery: `claim_due(channel)` locks due outbox rows (FOR UPDATE SKIP LOCKED) for one sender while it
delivers them; a sender killed mid-way leaves them pending for the next (at least once, with the same
idempotency key, which receivers use to drop a repeat).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert

from pipeline.alerts.lifecycle import AlertChange, LifecyclePlan, Notice, Silence, StoredAlert
from pipeline.alerts.vocabulary import DEFAULT_RULES, RuleConfig, severity_rank
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
    "SILENCE_MAX",
    "SILENCE_MIN",
    "AlertStore",
    "DueNotification",
    "EvaluationClaim",
    "OpenAlert",
    "OutboxClaim",
    "RuleConfigs",
    "SilenceRefused",
    "dashboard_link",
    "notification_payload",
]

_NOW = text("SELECT UTC_TIMESTAMP(6)")

SILENCE_MIN = timedelta(seconds=60)
SILENCE_MAX = timedelta(days=366)
"""A silence lasts from a minute to a year (and a day: leap years)."""


def dashboard_link(dashboard_url: str, vm_name: str | None) -> str:
    """Where an alert is looked at: its machine in the dashboard (the name URL-encoded), else the main page."""
    return dashboard_url.rstrip("/") + "/" + (f"?{urlencode({'vm': vm_name})}" if vm_name else "")


class SilenceRefused(ValueError):
    """A silence that cannot be set as asked (its times); the message says why."""


def notification_payload(alert: Mapping, notice: Notice, dashboard_url: str, at: datetime) -> dict:
    """The body every channel is built from (the webhook sends it as is): what changed, and where to look."""
    key = f"sendense-alert-{alert['id']}-{notice.seq}"
    vm = alert.get("vm_name")
    link = dashboard_link(dashboard_url, vm)
    return {
        "idempotency_key": key,
        "alert_id": alert["id"],
        "rule": alert["rule"],
        "state": notice.event,
        "severity": notice.severity,
        "vm_name": vm,
        "job_id": alert.get("job_id"),
        "job_type": alert.get("job_type"),
        "summary": alert["summary"],
        "started_at": aware(alert["started_at"]).isoformat(),
        "resolved_at": aware(alert["resolved_at"]).isoformat() if alert.get("resolved_at") else None,
        "notified_at": aware(at).isoformat(),
        "dashboard_url": link,
        "api_path": f"/api/v1/alerts/{alert['id']}",
    }


# What the lifecycle and the rules read of a stored alert (not its details: thousands are read every run).
# Times as microseconds since the epoch: a driver parses an integer many times faster than a DATETIME.
_PLANNED = (
    alerts.c.id, alerts.c.alert_key, alerts.c.rule, alerts.c.state, alerts.c.severity, alerts.c.summary,
    func.timestampdiff(literal_column("MICROSECOND"), literal_column("'1970-01-01'"), alerts.c.started_at)
    .label("started_us"),
    func.timestampdiff(literal_column("MICROSECOND"), literal_column("'1970-01-01'"), alerts.c.resolved_at)
    .label("resolved_us"),
    alerts.c.notified_state, alerts.c.notified_severity,
    alerts.c.vm_name, alerts.c.job_id, alerts.c.job_type, alerts.c.notify_seq,
)  # fmt: skip
_EPOCH = datetime(1970, 1, 1)


def _moment(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=int(us))


def _stored(row: Row) -> StoredAlert:
    return StoredAlert(
        id=row.id,
        key=row.alert_key,
        rule=row.rule,
        state=row.state,
        severity=row.severity,
        summary=row.summary,
        started_at=_moment(row.started_us),
        resolved_at=_moment(row.resolved_us),
        notified_state=row.notified_state,
        notified_severity=row.notified_severity,
        vm_name=row.vm_name,
        notify_seq=row.notify_seq,
    )


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """A stored alert the rules must look at again: its key and subject."""

    key: str
    rule: str
    vm_name: str | None
    job_id: str | None
    job_type: str | None


class EvaluationClaim:
    """One evaluation, inside the transaction that holds the claim."""

    def __init__(self, conn: Connection, watermark: datetime | None, now: datetime) -> None:
        self.conn = conn
        self.watermark = watermark
        self.now = now
        self._open: list[Row] | None = None

    def _open_rows(self) -> list[Row]:
        if self._open is None:
            self._open = self.conn.execute(
                select(*_PLANNED).where(or_(alerts.c.state == "firing", alerts.c.notified_state == "firing"))
            ).all()
        return self._open

    def open_alerts(self) -> list[OpenAlert]:
        """Alerts firing, or resolved and not yet notified as such: each rule looks at its subjects again."""
        return [OpenAlert(r.alert_key, r.rule, r.vm_name, r.job_id, r.job_type) for r in self._open_rows()]

    def stored(self, firing_keys: Sequence[str]) -> dict[str, StoredAlert]:
        """The alerts the lifecycle must consider: open ones, and any stored under a key that fires now."""
        found = {r.alert_key: _stored(r) for r in self._open_rows()}
        keys = [k for k in firing_keys if k not in found]
        for i in range(0, len(keys), 1000):
            rows = self.conn.execute(
                select(*_PLANNED).where(alerts.c.alert_key.in_(bindparam("keys", expanding=True))),
                {"keys": keys[i : i + 1000]},
            )
            found |= {r.alert_key: _stored(r) for r in rows}
        return found

    def silences(self) -> list[Silence]:
        rows = self.conn.execute(
            select(alert_silences).where(alert_silences.c.ends_at > self.now, alert_silences.c.ended_at.is_(None))
        )
        return [Silence(r.id, r.vm_name, r.rule, r.starts_at, r.ends_at) for r in rows]

    def apply(
        self,
        plan: LifecyclePlan,
        routes: Mapping[str, str],
        configs: RuleConfigs,
        dashboard_url: str,
    ) -> int:
        """Write the plan: alert rows, transitions, and each notice into the outbox of every channel routed to
        it (`routes`: channel → lowest severity; a rule's `channels`, None for all). Returns the
        notifications enqueued."""
        enqueued = 0
        for change in plan.changes:
            alert_id = self._write_alert(change)
            row = self.conn.execute(select(alerts).where(alerts.c.id == alert_id)).one()._mapping
            for kind, severity, silenced in change.transitions:
                self.conn.execute(
                    insert(alert_transitions).values(
                        alert_id=alert_id,
                        kind=kind,
                        severity=severity,
                        summary=row["summary"],
                        silenced=int(silenced),
                        at=self.now,
                    )  # fmt: skip
                )
            if change.notice is None:
                continue
            payload = notification_payload(row, change.notice, dashboard_url, self.now)
            wanted = configs(row["rule"], row["vm_name"]).channels
            for channel, minimum in routes.items():
                if wanted is not None and channel not in wanted:
                    continue
                if severity_rank(change.notice.severity) < severity_rank(minimum):
                    continue
                self.conn.execute(
                    insert(alert_notifications).values(
                        alert_id=alert_id,
                        channel=channel,
                        event=change.notice.event,
                        idempotency_key=payload["idempotency_key"],
                        payload=payload,
                        state="pending",
                        next_attempt_at=self.now,
                        created_at=self.now,
                    )  # fmt: skip
                )
                enqueued += 1
        return enqueued

    def _write_alert(self, change: AlertChange) -> int:
        if change.alert_id is not None:
            values = {"last_evaluated_at": self.now, **change.values}
            self.conn.execute(update(alerts).where(alerts.c.id == change.alert_id).values(**values))
            return change.alert_id
        c = change.condition
        assert c is not None
        values = {
            "alert_key": c.key,
            "rule": c.rule,
            "vm_name": c.vm_name,
            "job_id": c.job_id,
            "job_type": c.job_type,
            "last_evaluated_at": self.now,
            **change.values,
        }
        return self.conn.execute(insert(alerts).values(**values)).inserted_primary_key[0]

    def finish(self, watermark: datetime) -> None:
        self.conn.execute(
            update(alert_evaluations)
            .where(alert_evaluations.c.id == 1)
            .values(watermark=watermark, runs=alert_evaluations.c.runs + 1, last_finished_at=self.now)
        )


@dataclass(frozen=True, slots=True)
class DueNotification:
    id: int
    alert_id: int
    channel: str
    event: str
    idempotency_key: str
    payload: dict
    attempts: int


class OutboxClaim:
    """Due notifications of one channel, locked for this sender until the block ends (then committed)."""

    def __init__(self, conn: Connection, rows: list[DueNotification], now: datetime) -> None:
        self.conn = conn
        self.rows = rows
        self.now = now

    def sent(self, notification_id: int) -> None:
        self.conn.execute(
            update(alert_notifications)
            .where(alert_notifications.c.id == notification_id)
            .values(state="sent", sent_at=self.now, attempts=alert_notifications.c.attempts + 1, last_error=None)
        )

    def retry(self, notification_id: int, error: str, delay: float) -> None:
        self.conn.execute(
            update(alert_notifications)
            .where(alert_notifications.c.id == notification_id)
            .values(
                attempts=alert_notifications.c.attempts + 1,
                last_error=error[:4000],
                next_attempt_at=self.now + timedelta(seconds=delay),
            )
        )

    def refused(self, notification_id: int, error: str) -> None:
        """The receiver refused it for good (a 4xx other than 408/429): recorded, not retried."""
        self.conn.execute(
            update(alert_notifications)
            .where(alert_notifications.c.id == notification_id)
            .values(state="refused", attempts=alert_notifications.c.attempts + 1, last_error=error[:4000])
        )


class AlertStore:
    """Every write of the alert tables, and the reads the evaluation and the senders need."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def claim_evaluation(self) -> Iterator[EvaluationClaim | None]:
        """The evaluation claim, or None when another scheduler holds it (this run is skipped)."""
        with self.engine.connect().execution_options(isolation_level="READ COMMITTED") as conn, conn.begin():
            row = conn.execute(
                select(alert_evaluations.c.watermark)
                .where(alert_evaluations.c.id == 1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                yield None
                return
            yield EvaluationClaim(conn, row.watermark, conn.execute(_NOW).scalar_one())

    @contextmanager
    def claim_due(self, channel: str, limit: int = 100) -> Iterator[OutboxClaim]:
        """Due notifications of `channel`, longest due first, locked (other senders skip them) until the block
        ends. One waits while an older notification of the same alert on the channel is pending (backing off,
        or being delivered by another sender), so a receiver gets an alert's transitions in order."""
        with self.engine.connect().execution_options(isolation_level="READ COMMITTED") as conn, conn.begin():
            now = conn.execute(_NOW).scalar_one()
            n = alert_notifications.c
            older = alert_notifications.alias("older")
            o = older.c
            earlier_pending = (
                select(o.id)
                .where(o.alert_id == n.alert_id, o.channel == n.channel, o.state == "pending", o.id < n.id)
                .exists()
            )
            rows = conn.execute(
                select(n.id, n.alert_id, n.channel, n.event, n.idempotency_key, n.payload, n.attempts)
                .where(n.state == "pending", n.channel == channel, n.next_attempt_at <= now, ~earlier_pending)
                # The index's own order (state, channel, next_attempt_at, id): read in order and stopped at the
                # limit, so only the rows returned are locked and sent rows are never scanned.
                .order_by(n.next_attempt_at, n.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            yield OutboxClaim(conn, [DueNotification(*r) for r in rows], now)

    # --- what operators do through the API ---------------------------------------------------------

    def acknowledge(self, alert_id: int, by: str, comment: str) -> bool:
        """Record who acknowledged the alert, when (the server's clock) and why; False if there is no such
        alert. A later acknowledgement replaces it; the alert's next episode (it fires anew after a notified
        resolve) starts unacknowledged."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(alerts)
                .where(alerts.c.id == alert_id)
                .values(acknowledged_at=func.utc_timestamp(6), acknowledged_by=by[:255], ack_comment=comment[:1000])
            )
        return result.rowcount > 0

    def create_silence(
        self,
        *,
        vm_name: str | None,
        rule: str | None,
        reason: str,
        created_by: str,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        duration: timedelta | None = None,
    ) -> int:
        """A silence of a machine and/or a rule (None: any) from `starts_at` (default now) to `ends_at` or for
        `duration`; times naive UTC. Raises SilenceRefused when it would not silence anything for a minute
        to a year from now on. Returns its id."""
        if vm_name is None and rule is None:
            raise SilenceRefused("a silence names a machine (vm_name), a rule, or both")
        if (ends_at is None) == (duration is None):
            raise SilenceRefused("give either ends_at or duration_seconds")
        with self.engine.begin() as conn:
            now = conn.execute(_NOW).scalar_one()
            starts = now if starts_at is None else starts_at
            ends = starts + duration if duration is not None else ends_at
            assert ends is not None
            if not SILENCE_MIN <= ends - starts <= SILENCE_MAX:
                raise SilenceRefused("a silence lasts from 60 seconds to 366 days (ends_at - starts_at)")
            if ends <= now:
                raise SilenceRefused(f"ends_at {ends.isoformat()}Z is already past (now {now.isoformat()}Z)")
            if starts > now + SILENCE_MAX:
                raise SilenceRefused("starts_at is more than 366 days ahead")
            return conn.execute(
                insert(alert_silences).values(
                    vm_name=vm_name,
                    rule=rule,
                    starts_at=starts,
                    ends_at=ends,
                    reason=reason[:1000],
                    created_by=created_by[:255],
                    created_at=now,
                )
            ).inserted_primary_key[0]

    def end_silence(self, silence_id: int, by: str) -> bool | None:
        """End a silence now, keeping its record (who ended it, when). True: ended now; False: it had ended
        already (ended, or expired) and is left as it was; None: no such silence."""
        with self.engine.begin() as conn:
            now = conn.execute(_NOW).scalar_one()
            s = alert_silences.c
            result = conn.execute(
                update(alert_silences)
                .where(s.id == silence_id, s.ended_at.is_(None), s.ends_at > now)
                .values(ended_at=now, ended_by=by[:255])
            )
            if result.rowcount:
                return True
            exists = conn.execute(select(s.id).where(s.id == silence_id)).first()
        return False if exists else None

    def set_rule_override(self, rule: str, vm_name: str | None, config: Mapping, updated_by: str) -> None:
        """Replace the API's override of a rule, for one machine or (None) every machine: `config` holds what
        it sets (enabled, severity, params, channels); an empty one removes the override."""
        key = {"rule": rule, "vm_name": vm_name or ""}
        with self.engine.begin() as conn:
            o = alert_rule_overrides.c
            if not config:
                conn.execute(delete(alert_rule_overrides).where(o.rule == rule, o.vm_name == key["vm_name"]))
                return
            stmt = mysql_insert(alert_rule_overrides).values(
                **key, config=dict(config), updated_by=updated_by[:255], updated_at=func.utc_timestamp(6)
            )
            new = stmt.inserted
            updates = {"config": new.config, "updated_by": new.updated_by, "updated_at": new.updated_at}
            conn.execute(stmt.on_duplicate_key_update(updates))

    # --- reads of the evaluation and the senders ------------------------------------------------------

    def rule_configs(self, defaults: Mapping[str, dict]) -> RuleConfigs:
        """Every rule's configuration: built-in defaults, then settings (`defaults`), then the API's overrides."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(alert_rule_overrides.c.rule, alert_rule_overrides.c.vm_name,
                                       alert_rule_overrides.c.config)).all()  # fmt: skip
        return RuleConfigs(defaults, {(r.rule, r.vm_name): r.config for r in rows})

    def firing_counts(self) -> dict[str, int]:
        """Firing alerts by severity."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(alerts.c.severity, func.count()).where(alerts.c.state == "firing").group_by(alerts.c.severity)
            ).all()
        return {r[0]: int(r[1]) for r in rows}

    def pending_notifications(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(alert_notifications).where(alert_notifications.c.state == "pending")
            ).scalar_one()


class RuleConfigs:
    """The effective configuration of each rule for each machine (a callable, as the rules take it)."""

    def __init__(self, settings_rules: Mapping[str, dict], overrides: Mapping[tuple[str, str], dict]) -> None:
        self.base = {rule: DEFAULT_RULES[rule].merged(settings_rules.get(rule)) for rule in DEFAULT_RULES}
        self.overrides = overrides
        self._cache: dict[tuple[str, str | None], RuleConfig] = {}

    def __call__(self, rule: str, vm_name: str | None) -> RuleConfig:
        key = (rule, vm_name)
        hit = self._cache.get(key)
        if hit is None:
            config = self.base[rule].merged(self.overrides.get((rule, "")))
            if vm_name is not None:
                config = config.merged(self.overrides.get((rule, vm_name)))
            hit = self._cache[key] = config
        return hit
