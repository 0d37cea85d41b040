"""Each alert rule with hand-made cases: no history, one run, equal runs, the clock at the threshold."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from pipeline.alerts import rules
from pipeline.alerts.rules import FinishedPair, HealthFacts, MachineFacts, RunningJob, SetAsideJob
from pipeline.alerts.store import RuleConfigs

NOW = datetime(2026, 12, 3, 3, 0)
DAY = 86_400
CONFIGS = RuleConfigs({}, {})


def machine(last_success_ago: float | None, known_ago: float = 10 * DAY, rpo: int = DAY) -> MachineFacts:
    last = None if last_success_ago is None else NOW - timedelta(seconds=last_success_ago)
    return MachineFacts("db-01", rpo, last, NOW - timedelta(seconds=known_ago))


def running(**values) -> RunningJob:
    base = {
        "job_id": "j1", "vm_name": "db-01", "job_type": "backup", "backup_type": "full", "status": "running",
        "created_at": NOW - timedelta(hours=1), "elapsed_seconds": 100.0, "last_seen_at": NOW,
        "progress_seen_at": NOW, "usual_durations": (), "eta_at": None,
    }  # fmt: skip
    return RunningJob(**{**base, **values})


def only(found: dict):
    [value] = found.values()
    return value


# --- rpo and never_backed_up -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "severity"),
    [(DAY - 1, None), (DAY, None), (DAY + 1, "warning"), (2 * DAY, "warning"), (2 * DAY + 1, "critical")],
)
def test_rpo_bands_at_one_and_two_objectives(age, severity):
    found = only(rules.rpo([machine(age)], CONFIGS, NOW))
    assert (found.severity if found else None) == severity


def test_rpo_says_how_overdue_in_words():
    found = only(rules.rpo([machine(30 * 3600)], CONFIGS, NOW))
    assert found.summary == "db-01: last successful backup 30.0 h ago, 1.2× its RPO of 24.0 h"
    assert found.key == "rpo:db-01" and found.details["overdue_ratio"] == 1.25


def test_a_machine_never_backed_up_is_not_rpo_but_coverage():
    assert only(rules.rpo([machine(None)], CONFIGS, NOW)) is None
    assert only(rules.never_backed_up([machine(None, known_ago=DAY)], CONFIGS, NOW)) is None, "at the threshold"
    found = only(rules.never_backed_up([machine(None, known_ago=DAY + 60)], CONFIGS, NOW))
    assert found.rule == "never_backed_up" and "never been backed up" in found.summary
    assert only(rules.never_backed_up([machine(3600, known_ago=5 * DAY)], CONFIGS, NOW)) is None


# --- job_failed and job_anomalous --------------------------------------------------------------------


def test_job_failed_fires_on_a_failure_and_counts_the_failures_in_a_row():
    one = only(rules.job_failed([FinishedPair("db-01", "backup", "j1", "failed", "disk full", 1)], CONFIGS))
    assert one.summary == "Backup of db-01 failed: disk full" and one.severity == "critical"
    three = only(rules.job_failed([FinishedPair("db-01", "backup", "j3", "failed", None, 3)], CONFIGS))
    assert three.summary == "Backup of db-01 failed (3 failures in a row)" and three.job_id == "j3"
    assert only(rules.job_failed([FinishedPair("db-01", "backup", "j4", "completed", None, 0)], CONFIGS)) is None
    assert only(rules.job_failed([FinishedPair("db-01", "backup", "", "none", None, 0)], CONFIGS)) is None


def test_job_anomalous_quotes_each_flags_sentence():
    flags = [{"metric": "duration_seconds", "sentence": "took 2.4× longer than usual"},
             {"metric": "bytes_transferred", "sentence": "moved 3.0× more data than usual"}]  # fmt: skip
    pair = FinishedPair("db-01", "backup", "j9", "completed", None, 0, anomalies=flags, anomalous_job_id="j9")
    found = only(rules.job_anomalous([pair], CONFIGS))
    assert found.summary == (
        "Backup of db-01 was unusual: took 2.4× longer than usual; moved 3.0× more data than usual"
    )
    clean = FinishedPair("db-01", "backup", "j10", "completed", None, 0, anomalies=(), anomalous_job_id="j10")
    assert only(rules.job_anomalous([clean], CONFIGS)) is None


# --- running jobs ------------------------------------------------------------------------------------


def test_overrunning_needs_enough_history_and_compares_with_the_median():
    assert only(rules.job_overrunning([running(elapsed_seconds=1000, usual_durations=())], CONFIGS, NOW)) is None
    assert (
        only(rules.job_overrunning([running(elapsed_seconds=1000, usual_durations=(100, 100))], CONFIGS, NOW)) is None
    )
    equal = running(elapsed_seconds=200, usual_durations=(100, 100, 100))
    assert only(rules.job_overrunning([equal], CONFIGS, NOW)) is None, "exactly twice the usual is not over it"
    over = running(elapsed_seconds=201, usual_durations=(100, 90, 100, 5000))
    found = only(rules.job_overrunning([over], CONFIGS, NOW))
    assert found is not None and "its usual" in found.summary, "the median, not the mean dragged by 5000"


def test_overrunning_when_the_eta_lies_past_the_backup_window():
    configs = RuleConfigs({"job_overrunning": {"params": {"window_end": "06:00"}}}, {})
    inside = running(eta_at=NOW.replace(hour=5, minute=30))
    assert only(rules.job_overrunning([inside], configs, NOW)) is None
    late = running(eta_at=NOW.replace(hour=7))
    found = only(rules.job_overrunning([late], configs, NOW))
    assert "after the backup window ends at 06:00 UTC" in found.summary
    assert only(rules.job_overrunning([late], CONFIGS, NOW)) is None, "no window configured"


def test_stalled_only_while_updates_still_arrive():
    ten = timedelta(minutes=10)
    assert only(rules.job_stalled([running(progress_seen_at=NOW - ten + timedelta(seconds=1))], CONFIGS, NOW)) is None
    found = only(rules.job_stalled([running(progress_seen_at=NOW - ten)], CONFIGS, NOW))
    assert found.summary == "Backup of db-01 has transferred nothing for 10 min while its agent still reports"
    silent = running(progress_seen_at=NOW - 2 * ten, last_seen_at=NOW - ten)
    assert only(rules.job_stalled([silent], CONFIGS, NOW)) is None, "a silent job is the reaper's"


def test_pending_too_long_from_creation_on_the_servers_clock():
    just = running(status="pending", created_at=NOW - timedelta(minutes=29, seconds=59))
    assert only(rules.job_pending_too_long([just], CONFIGS, NOW)) is None
    found = only(rules.job_pending_too_long([running(status="pending", created_at=NOW - timedelta(minutes=30))],
                                            CONFIGS, NOW))  # fmt: skip
    assert found.key == "job_pending_too_long:j1"
    assert only(rules.job_pending_too_long([running(created_at=NOW - timedelta(days=1))], CONFIGS, NOW)) is None


# --- the pipeline's own ------------------------------------------------------------------------------


def test_rollup_set_aside_and_pipeline_unhealthy():
    found = only(rules.rollup_set_aside([SetAsideJob("j1", "db-01", 5, "ValueError: bad")], CONFIGS))
    assert "failed 5 times and was set aside: ValueError: bad" in found.summary
    health = HealthFacts({"influxdb": NOW - timedelta(minutes=5), "mysql": NOW - timedelta(minutes=4, seconds=59)})
    found = rules.pipeline_unhealthy(health, CONFIGS, NOW)
    assert found["pipeline_unhealthy:influxdb"].summary == "InfluxDB has been unreachable for 5 min"
    assert found["pipeline_unhealthy:mysql"] is None and found["pipeline_unhealthy:commit_queue"] is None


# --- configuration -----------------------------------------------------------------------------------


def test_settings_then_global_then_machine_overrides():
    configs = RuleConfigs(
        {"job_stalled": {"params": {"minutes": 20}}},
        {("job_stalled", ""): {"severity": "critical"}, ("job_stalled", "db-01"): {"enabled": False}},
    )
    assert configs("job_stalled", None).params["minutes"] == 20 and configs("job_stalled", None).severity == "critical"
    assert configs("job_stalled", "web-01").enabled and not configs("job_stalled", "db-01").enabled
    stalled = running(progress_seen_at=NOW - timedelta(minutes=30))
    assert only(rules.job_stalled([stalled], configs, NOW)) is None, "disabled for db-01"
    assert only(rules.job_stalled([running(vm_name="web-01", progress_seen_at=NOW - timedelta(minutes=30))],
                                  configs, NOW)).severity == "critical"  # fmt: skip
