"""The Prometheus Alertmanager channel: notifications posted to its v2 API, firing alerts re-posted before they expire.

Alertmanager knows an alert by its label set and forgets a firing one at its `endsAt`, so:

* a firing notification posts the alert valid for 4 resend intervals, and `resend()` (the scheduler's
  "alertmanager-resend" job) re-posts, every interval, each alert whose last notification Alertmanager
  took was a firing one: a pipeline that stops lets its alerts expire instead of firing for ever;
* severity is a label (routes match on it), so an escalation is a new label set: the post that fires
  the new severity also resolves the one Alertmanager had firing;
* a resolve posts the label set Alertmanager has firing, with `endsAt` the time the alert resolved;
* a notification older than one already delivered for the same alert (retries can reorder them) posts
  nothing: Alertmanager holds a state, not a log, and must not be set back.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import quote

import httpx
from sqlalchemy import Connection, Engine, bindparam, or_, select

from pipeline.alerts.store import DueNotification
from pipeline.db.tables import alert_notifications, alerts
from pipeline.outages import StoreUnavailable
from pipeline.settings import AlertSettings

__all__ = [
    "CHANNEL",
    "AlertmanagerChannel",
    "Posted",
    "Result",
    "alert_labels",
    "delivery_alerts",
    "postable_alert",
    "resend_selection",
]

log = logging.getLogger(__name__)

CHANNEL = "alertmanager"
VALIDITY = 4
"""A posted firing alert is valid for this many resend intervals: three re-posts may be lost."""
_BATCH = 500  # alerts per re-post request
_REMEMBERED = 10_000  # alerts whose last post this process remembers (see AlertmanagerChannel.deliver)

Outcome = Literal["sent", "retry", "refused"]


@dataclass(frozen=True, slots=True)
class Result:
    """One delivery: `sent`, `retry` (5xx, 408, 429, no connection, timeout) or `refused` (any other 4xx)."""

    state: Outcome
    error: str | None = None
    retry_after: float | None = None
    """Always None: Alertmanager sends no Retry-After (the field is there for senders that honour one)."""


@dataclass(frozen=True, slots=True)
class Posted:
    """An alertmanager notification of one alert (`state` sent or pending), in the order of its `id`."""

    id: int
    alert_id: int
    event: str
    state: str
    payload: dict


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _link(url: str) -> str:
    # The payload's link carries the VM name as typed (spaces, quotes, non-ASCII): Alertmanager wants a URI.
    return quote(url, safe=":/?&=#%+@")


def alert_labels(payload: Mapping, alert_key: str, severity: str | None = None) -> dict[str, str]:
    """The label set Alertmanager identifies the alert by (`severity` instead of the payload's, when given)."""
    labels = {"alertname": payload["rule"], "severity": severity or payload["severity"], "alert_key": alert_key}
    if payload.get("vm_name"):
        labels["vm_name"] = payload["vm_name"]
    if payload.get("job_type"):
        labels["job_type"] = payload["job_type"]
    return labels


def postable_alert(payload: Mapping, alert_key: str, ends_at: datetime, severity: str | None = None) -> dict:
    """One alert of a POST /api/v2/alerts body: firing until `ends_at` (resolved when that has passed)."""
    link = _link(payload["dashboard_url"])
    annotations = {"summary": payload["summary"], "dashboard_url": link, "idempotency_key": payload["idempotency_key"]}
    if payload.get("job_id"):
        annotations["job_id"] = payload["job_id"]
    return {
        "labels": alert_labels(payload, alert_key, severity),
        "annotations": annotations,
        "startsAt": _rfc3339(datetime.fromisoformat(payload["started_at"])),
        "endsAt": _rfc3339(ends_at),
        "generatorURL": link,
    }


def delivery_alerts(
    notification_id: int,
    payload: Mapping,
    alert_key: str,
    posted: Iterable[Posted],
    now: datetime,
    resend_seconds: float,
) -> list[dict] | None:
    """What to post for one notification, given what the alert's earlier ones told Alertmanager (`posted`).

    None: a later notification of the alert was delivered already, so this one would set it back.
    """
    sent = sorted((p for p in posted if p.state == "sent" and p.id != notification_id), key=lambda p: p.id)
    if sent and sent[-1].id > notification_id:
        return None
    before = sent[-1] if sent and sent[-1].event == "firing" else None
    firing_severity = before.payload["severity"] if before else None
    if payload["state"] == "firing":
        out = [postable_alert(payload, alert_key, now + timedelta(seconds=VALIDITY * resend_seconds))]
        if firing_severity and firing_severity != payload["severity"]:
            out.append(postable_alert(payload, alert_key, now, severity=firing_severity))
        return out
    resolved = datetime.fromisoformat(payload["resolved_at"]) if payload.get("resolved_at") else now
    return [postable_alert(payload, alert_key, min(resolved, now), severity=firing_severity)]


def resend_selection(posted: Iterable[Posted]) -> list[Posted]:
    """The notifications to post again: per alert, the last one sent, when it fired and nothing is pending.

    A pending one (a resolve, an escalation) is the sender's to deliver; re-posting the older state
    meanwhile could bring back in Alertmanager an alert the sender has just resolved.
    """
    by_alert: dict[int, list[Posted]] = {}
    for p in posted:
        by_alert.setdefault(p.alert_id, []).append(p)
    picked = []
    for records in by_alert.values():
        if any(p.state == "pending" for p in records):
            continue
        sent = [p for p in records if p.state == "sent"]
        if sent:
            last = max(sent, key=lambda p: p.id)
            if last.event == "firing":
                picked.append(last)
    return sorted(picked, key=lambda p: p.alert_id)


class AlertmanagerChannel:
    """Posts to one Alertmanager (`SENDENSE_ALERTMANAGER_URL`); reads the alert tables, writes none of them."""

    name = CHANNEL

    def __init__(self, settings: AlertSettings, engine: Engine, client: httpx.Client | None = None) -> None:
        if not settings.alertmanager_url:
            raise ValueError("SENDENSE_ALERTMANAGER_URL is not set: there is no Alertmanager to post to")
        self.url = settings.alertmanager_url.rstrip("/") + "/api/v2/alerts"
        self.resend_seconds = settings.alertmanager_resend
        self.timeout = settings.alertmanager_timeout
        self.engine = engine
        self.client = client or httpx.Client(timeout=settings.alertmanager_timeout)
        # A sender commits a whole claim at its end: within one, the notifications it posted are not in
        # the table yet, so this process remembers each alert's last post too.
        self._last: OrderedDict[int, Posted] = OrderedDict()

    def deliver(self, notification: DueNotification) -> Result:
        """Post one outbox notification (the sender records the result: sent, retried or refused)."""
        with self.engine.connect() as conn:
            alert_key = conn.execute(
                select(alerts.c.alert_key).where(alerts.c.id == notification.alert_id)
            ).scalar_one_or_none()
            posted = _posted(conn, [notification.alert_id], states=("sent",))
        remembered = self._last.get(notification.alert_id)
        if remembered is not None:
            posted.append(remembered)
        now = datetime.now(UTC)
        body = delivery_alerts(notification.id, notification.payload, alert_key or f"alert:{notification.alert_id}",
                               posted, now, self.resend_seconds)  # fmt: skip
        if body is None:
            return Result("sent", "superseded: a later notification of this alert was delivered to Alertmanager")
        result = self._post(body)
        if result.state == "sent":
            self._remember(Posted(notification.id, notification.alert_id, notification.event, "sent",
                                  notification.payload))  # fmt: skip
        return result

    def resend(self) -> int:
        """Post again every alert Alertmanager was last told is firing, valid for 4 more intervals; returns how many.

        The alerts' rows stay share-locked until the posts are done: an evaluation that resolves one meanwhile
        waits, so its resolve reaches Alertmanager after this post, never before. Rows an evaluation is
        changing now are skipped (the next run posts them, well before they expire).
        """
        with self.engine.connect().execution_options(isolation_level="READ COMMITTED") as conn, conn.begin():
            a = alerts.c
            keys = dict(
                conn.execute(
                    select(a.id, a.alert_key)
                    .where(or_(a.state == "firing", a.notified_state == "firing"))
                    .order_by(a.id)
                    .with_for_update(read=True, skip_locked=True)
                ).all()
            )
            picked = resend_selection(_posted(conn, list(keys), states=("sent", "pending")))
            ends = datetime.now(UTC) + timedelta(seconds=VALIDITY * self.resend_seconds)
            body = [postable_alert(p.payload, keys[p.alert_id], ends) for p in picked]
            for i in range(0, len(body), _BATCH):
                result = self._post(body[i : i + _BATCH])
                if result.state == "retry":
                    raise StoreUnavailable(f"{result.error}; the next re-post tries again")
                if result.state == "refused":
                    raise RuntimeError(f"Alertmanager refused the re-post of firing alerts: {result.error}")
        return len(body)

    def _post(self, body: Sequence[dict]) -> Result:
        try:
            response = self.client.post(self.url, json=list(body))
        except httpx.TimeoutException:
            return Result("retry", f"Alertmanager at {self.url} did not answer within {self.timeout:g} s")
        except httpx.TransportError as exc:
            return Result("retry", f"Alertmanager at {self.url} is unreachable ({type(exc).__name__}: {exc}); "
                                   "is it running? (infra/alertmanager.sh start)")  # fmt: skip
        if response.is_success:
            return Result("sent")
        error = f"Alertmanager at {self.url} answered {response.status_code}: {response.text[:500]}"
        if response.status_code >= 500 or response.status_code in (408, 429):
            return Result("retry", error)
        return Result("refused", error)

    def _remember(self, posted: Posted) -> None:
        self._last[posted.alert_id] = posted
        self._last.move_to_end(posted.alert_id)
        while len(self._last) > _REMEMBERED:
            self._last.popitem(last=False)

    def close(self) -> None:
        self.client.close()


def _posted(conn: Connection, alert_ids: Sequence[int], states: tuple[str, ...]) -> list[Posted]:
    """The alertmanager notifications of these alerts in these states."""
    n = alert_notifications.c
    out: list[Posted] = []
    for i in range(0, len(alert_ids), 1000):
        rows = conn.execute(
            select(n.id, n.alert_id, n.event, n.state, n.payload).where(
                n.alert_id.in_(bindparam("ids", expanding=True)), n.channel == CHANNEL, n.state.in_(states)
            ),
            {"ids": list(alert_ids[i : i + 1000])},
        )
        out += [Posted(r.id, r.alert_id, r.event, r.state, r.payload) for r in rows]
    return out
