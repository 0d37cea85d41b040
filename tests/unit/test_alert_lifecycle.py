"""The alert lifecycle, without a database: fire, resolve, hold-down, escalation, silences."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from pipeline.alerts.lifecycle import Silence, StoredAlert, plan_lifecycle
from pipeline.alerts.vocabulary import Condition

T0 = datetime(2026, 12, 3, 2, 0)
HOLD = timedelta(minutes=5)
KEY = "job_failed:db-01:backup"


def condition(severity: str = "critical", summary: str = "Backup of db-01 failed") -> Condition:
    return Condition("job_failed", KEY, severity, summary, vm_name="db-01", job_id="j1", job_type="backup")


def stored(**values) -> StoredAlert:
    base = StoredAlert(
        id=7, key=KEY, rule="job_failed", state="firing", severity="critical", summary="Backup of db-01 failed",
        started_at=T0, resolved_at=None, notified_state="firing", notified_severity="critical", vm_name="db-01",
        notify_seq=1,
    )  # fmt: skip
    return replace(base, **values)


def only(plan):
    [change] = plan.changes
    return change


def test_a_new_condition_fires_and_is_notified():
    change = only(plan_lifecycle({}, {KEY: condition()}, [], T0, HOLD))
    assert change.alert_id is None and change.values["state"] == "firing" and change.values["started_at"] == T0
    assert change.transitions == [("fired", "critical", False)]
    assert (change.notice.event, change.notice.severity, change.notice.seq) == ("firing", "critical", 1)


def test_a_clear_key_without_an_alert_is_nothing():
    assert plan_lifecycle({}, {KEY: None}, [], T0, HOLD).changes == []


def test_a_firing_alert_that_is_still_firing_changes_nothing_but_its_evaluation_time():
    plan = plan_lifecycle({KEY: stored()}, {KEY: condition()}, [], T0, HOLD)
    assert plan.changes == [] and plan.evaluated_ids == [7]


def test_a_key_not_looked_at_keeps_its_state():
    assert plan_lifecycle({KEY: stored()}, {}, [], T0, HOLD).changes == []


def test_a_clear_condition_resolves_at_once_and_notifies_after_the_hold_down():
    change = only(plan_lifecycle({KEY: stored()}, {KEY: None}, [], T0, HOLD))
    assert change.values["state"] == "resolved" and change.values["resolved_at"] == T0
    assert change.transitions == [("resolved", "critical", False)] and change.notice is None
    resolved = stored(state="resolved", resolved_at=T0)
    assert plan_lifecycle({KEY: resolved}, {KEY: None}, [], T0 + HOLD - timedelta(seconds=1), HOLD).changes == []
    later = only(plan_lifecycle({KEY: resolved}, {KEY: None}, [], T0 + HOLD, HOLD))
    assert (later.notice.event, later.notice.seq) == ("resolved", 2) and later.values["notified_state"] == "resolved"
    # …also when the rules did not look at it in that run.
    assert only(plan_lifecycle({KEY: resolved}, {}, [], T0 + HOLD, HOLD)).notice.event == "resolved"


def test_fire_resolve_fire_within_the_hold_down_sends_one_pair():
    resolved = stored(state="resolved", resolved_at=T0)
    again = only(plan_lifecycle({KEY: resolved}, {KEY: condition()}, [], T0 + timedelta(minutes=2), HOLD))
    assert again.transitions == [("refired", "critical", False)] and again.notice is None
    assert "started_at" not in again.values, "the same episode goes on"


def test_a_condition_after_a_notified_resolve_is_a_new_episode():
    done = stored(state="resolved", resolved_at=T0, notified_state="resolved")
    change = only(plan_lifecycle({KEY: done}, {KEY: condition()}, [], T0 + timedelta(hours=1), HOLD))
    assert change.transitions == [("fired", "critical", False)]
    assert change.values["started_at"] == T0 + timedelta(hours=1) and change.values["acknowledged_by"] is None
    assert (change.notice.event, change.notice.seq) == ("firing", 2)


def test_escalation_is_notified_and_deescalation_is_recorded_only():
    rpo_key = "rpo:db-01"
    warn = stored(key=rpo_key, rule="rpo", severity="warning", notified_severity="warning")
    up = only(plan_lifecycle({rpo_key: warn}, {rpo_key: replace(condition("critical"), rule="rpo", key=rpo_key)},
                             [], T0, HOLD))  # fmt: skip
    assert up.transitions == [("escalated", "critical", False)] and up.notice.severity == "critical"
    crit = replace(warn, severity="critical", notified_severity="critical")
    down = only(plan_lifecycle({rpo_key: crit}, {rpo_key: replace(condition("warning"), rule="rpo", key=rpo_key)},
                               [], T0, HOLD))  # fmt: skip
    assert down.transitions == [("deescalated", "warning", False)] and down.notice is None


def test_a_silenced_alert_is_recorded_and_shown_but_sends_nothing_until_the_silence_ends():
    silence = Silence(1, "db-01", None, T0, T0 + timedelta(hours=1))
    change = only(plan_lifecycle({}, {KEY: condition()}, [silence], T0 + timedelta(minutes=1), HOLD))
    assert change.values["state"] == "firing" and change.transitions == [("fired", "critical", True)]
    assert change.notice is None and "notified_state" not in change.values
    unnotified = stored(notified_state=None, notified_severity=None, notify_seq=0)
    assert (
        plan_lifecycle({KEY: unnotified}, {KEY: condition()}, [silence], T0 + timedelta(minutes=30), HOLD).changes == []
    )
    after = only(plan_lifecycle({KEY: unnotified}, {KEY: condition()}, [silence], T0 + timedelta(hours=1), HOLD))
    assert after.notice.event == "firing", "expiry resumes sending"


def test_silences_match_by_machine_and_rule():
    now = T0 + timedelta(minutes=1)
    other_vm = Silence(1, "web-01", None, T0, T0 + timedelta(hours=1))
    other_rule = Silence(2, None, "rpo", T0, T0 + timedelta(hours=1))
    this_rule = Silence(3, None, "job_failed", T0, T0 + timedelta(hours=1))
    assert only(plan_lifecycle({}, {KEY: condition()}, [other_vm, other_rule], now, HOLD)).notice is not None
    assert only(plan_lifecycle({}, {KEY: condition()}, [this_rule], now, HOLD)).notice is None
    future = Silence(4, "db-01", None, T0 + timedelta(hours=2), T0 + timedelta(hours=3))
    assert only(plan_lifecycle({}, {KEY: condition()}, [future], now, HOLD)).notice is not None
