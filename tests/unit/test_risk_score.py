"""Failure risk (pipeline.insight.risk): hand-computed scores and the reasons they give."""

from __future__ import annotations

import math

import pytest

from pipeline.insight.risk import (
    HIGH,
    INTERCEPT,
    MEDIUM,
    WEIGHTS,
    HistoryRisk,
    PastRun,
    assess_history,
    failure_risk,
    level_of,
)

GB = 10**9
DAY = 86_400


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _ok(duration: float = 600.0, size: int = 10 * GB, backup_type: str = "incremental") -> PastRun:
    return PastRun("completed", backup_type, duration, size)


def _failed(duration: float = 120.0, size: int = GB) -> PastRun:
    return PastRun("failed", "incremental", duration, size)


def test_no_history_is_the_intercept_and_says_there_is_nothing_to_judge_by():
    history = assess_history([])
    assert (history.logit, history.runs, history.factors) == (INTERCEPT, 0, ())
    risk = failure_risk(history, age_seconds=None, rpo_seconds=DAY)
    # Never backed up: the RPO factor is at its cap of 2, 0.3 × 2 = 0.6 points.
    assert risk.score == pytest.approx(_sigmoid(-3.62 + 0.6)) == pytest.approx(0.04653, abs=1e-5)
    assert risk.level == "low"
    assert risk.reasons == ["no finished backup yet to judge by", "never backed up successfully"]
    # Not assessed yet (a machine from before the risk existed): the same score, said so.
    unknown = failure_risk(None, age_seconds=None, rpo_seconds=DAY)
    assert unknown.score == risk.score and unknown.reasons[0].startswith("not assessed yet")


def test_one_completed_run_has_no_trend_and_only_its_rpo_margin_counts():
    history = assess_history([_ok()])
    assert history.runs == 1 and history.factors == ()
    risk = failure_risk(history, age_seconds=6 * 3600, rpo_seconds=DAY)
    # 6 h of a 24 h objective: x = 0.25, 0.3 × 0.25 = 0.075 points.
    assert risk.score == pytest.approx(_sigmoid(-3.62 + 0.075))
    assert risk.reasons == ["nothing unusual in the last 1 runs"]


def test_one_failed_run_counts_as_a_failure_and_a_streak():
    history = assess_history([_failed()])
    assert {f.name: f.value for f in history.factors} == {"failures": 1.0, "streak": 1.0}
    assert history.logit == pytest.approx(-3.62 + 0.95 + 0.14)
    risk = failure_risk(history, age_seconds=None, rpo_seconds=DAY)
    # Never backed up successfully: the RPO factor is at its cap of 2, 0.6 points.
    assert risk.score == pytest.approx(_sigmoid(-3.62 + 0.95 + 0.14 + 0.6))
    assert risk.reasons == ["its only finished run failed", "never backed up successfully"]


def test_equal_runs_have_no_factor():
    history = assess_history([_ok() for _ in range(10)])
    assert history.factors == () and history.logit == INTERCEPT
    risk = failure_risk(history, age_seconds=3600, rpo_seconds=DAY)
    assert risk.score == pytest.approx(_sigmoid(-3.62 + 0.3 / 24))
    assert risk.level == "low" and risk.reasons == ["nothing unusual in the last 10 runs"]


def test_a_clean_degrading_trend_is_scored_and_named_in_words():
    # 8 runs of the same size, each 10 % longer than the one before (so 1/1.1 the speed), newest first.
    runs = [_ok(duration=1000 * 1.1**i) for i in reversed(range(8))]
    history = assess_history(runs)
    grew = 7 * math.log(1.1)  # the log-duration slope is exactly ln 1.1 per run, over 7 steps
    last = 4 * math.log(1.1)  # the newest (1.1^7) against the median of the other seven (1.1^3)
    values = {f.name: f.value for f in history.factors}
    assert values == pytest.approx({"duration": grew, "speed": grew, "last_run": last})
    assert history.logit == pytest.approx(-3.62 + 1.18 * grew + 0.70 * grew + 0.37 * last)
    risk = failure_risk(history, age_seconds=12 * 3600, rpo_seconds=DAY)
    assert risk.score == pytest.approx(_sigmoid(history.logit + 0.3 * 0.5))
    assert risk.score == pytest.approx(0.1116, abs=1e-4) and risk.level == "medium"
    # 1.1^7 = 1.949: 95 % longer, 49 % slower. The last run's 1.46× (0.14 points) and the RPO margin
    # (0.15) add too little to be named.
    assert risk.reasons == ["duration grew 95 % over 8 runs", "speed fell 49 % over 8 runs"]


def test_growing_data_is_named_as_data_and_duration():
    runs = [_ok(duration=600 * 1.15**i, size=int(10 * GB * 1.15**i)) for i in reversed(range(6))]
    reasons = failure_risk(assess_history(runs), age_seconds=0, rpo_seconds=DAY).reasons
    assert reasons[:2] == ["duration grew 101 % over 6 runs", "data grew 101 % over 6 runs"]
    assert not any("speed" in r for r in reasons)


def test_recent_failures_count_more_than_old_ones_and_a_streak_stops_at_three():
    newest = assess_history([_failed(), *[_ok()] * 9])
    oldest = assess_history([*[_ok()] * 9, _failed()])
    assert newest.logit > oldest.logit
    assert {f.name: f.value for f in oldest.factors} == pytest.approx({"failures": 0.7**9})
    five = assess_history([_failed()] * 5 + [_ok()] * 5)
    streak = next(f for f in five.factors if f.name == "streak")
    assert streak.value == 3.0 and streak.reason == "the last 5 runs failed in a row"
    risk = failure_risk(five, age_seconds=2 * DAY, rpo_seconds=DAY)
    assert risk.level == "high"
    # Weightiest first: 0.95 × (1 + 0.7 + 0.49 + 0.343 + 0.2401) = 2.63, then 0.3 × 2 = 0.6, then 0.14 × 3 = 0.42.
    assert risk.reasons == ["5 of the last 10 runs failed", "24 h past its 24 h RPO", "the last 5 runs failed in a row"]


def test_only_the_last_ten_runs_count():
    assert assess_history([*[_ok()] * 10, _failed()]).factors == ()


def test_trends_follow_the_machines_usual_backup_type():
    # A weekly full among incrementals is much bigger and longer: it is not a trend of the incrementals.
    runs = [_ok(), _ok(), _ok(duration=6000, size=100 * GB, backup_type="full"), _ok(), _ok(), _ok()]
    assert assess_history(runs).factors == ()


@pytest.mark.parametrize(
    ("age", "reason"),
    [
        (22 * 3600, "2 h left of its 24 h RPO"),
        (DAY - 20 * 60, "20 min left of its 24 h RPO"),
        (30 * 3600, "6 h past its 24 h RPO"),
        (None, "never backed up successfully"),
    ],
)
def test_the_rpo_margin_is_said_in_hours(age, reason):
    assert failure_risk(HistoryRisk(INTERCEPT, 3, ()), age_seconds=age, rpo_seconds=DAY).reasons == [reason]


def test_a_factor_is_named_only_when_it_adds_a_quarter_point():
    # Half an objective used is 0.3 × 0.5 = 0.15 points: counted in the score, not named.
    risk = failure_risk(HistoryRisk(INTERCEPT, 3, ()), age_seconds=12 * 3600, rpo_seconds=DAY)
    assert risk.reasons == ["nothing unusual in the last 3 runs"]
    assert risk.score == pytest.approx(_sigmoid(-3.62 + 0.15))


def test_the_stored_form_gives_back_the_same_risk():
    history = assess_history([_failed(), _failed(), *[_ok(duration=600 + 60 * i) for i in range(8)]])
    stored = HistoryRisk.stored(history.logit, history.as_dict())
    assert stored is not None and stored.runs == history.runs
    assert [f.name for f in stored.factors] == [f.name for f in history.factors]
    assert failure_risk(stored, age_seconds=3600, rpo_seconds=DAY) == failure_risk(
        history, age_seconds=3600, rpo_seconds=DAY
    )
    assert HistoryRisk.stored(None, None) is None


def test_levels_and_documented_weights():
    assert level_of(MEDIUM - 1e-9) == "low" and level_of(MEDIUM) == "medium" and level_of(HIGH) == "high"
    assert set(WEIGHTS) == {"failures", "streak", "duration", "size", "speed", "last_run", "rpo"}
    assert all(w >= 0 for w in WEIGHTS.values())  # every factor can only raise the risk, as its reason says
