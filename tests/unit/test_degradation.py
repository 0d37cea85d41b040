"""Simulated histories with planted degradation (pipeline.agent.degradation): what is planted is what happens."""

from __future__ import annotations

import random
import statistics

import pytest

from pipeline.agent.degradation import KINDS, SimulatedRun, fails_or_overruns, overran, plan_history


def _run(index: int, duration: float, status: str = "completed", backup_type: str = "incremental") -> SimulatedRun:
    return SimulatedRun(index, float(index * 24), backup_type, status, duration, 10**9)


@pytest.mark.parametrize("seed", range(10))
def test_a_healthy_machine_has_nothing_planted_and_runs_one_after_the_other(seed):
    history = plan_history(random.Random(seed), 40)
    assert history.degradation is None
    assert not any(r.degraded for r in history.runs)
    assert len(history.runs) >= 40  # one a slot, and maybe a retry after a failure
    for before, after in zip(history.runs, history.runs[1:], strict=False):
        assert after.started_hours >= before.ended_hours
        if after.retry:
            assert before.status == "failed" and after.started_hours - before.ended_hours >= 1.0


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("seed", range(5))
def test_a_degradation_ends_in_the_failures_it_plans(kind, seed):
    history = plan_history(random.Random(seed), 60, kind)
    d = history.degradation
    assert d is not None and d.kind == kind and 5 <= d.length <= 14
    end = d.onset + d.length
    assert all(history.runs[i].status == "failed" for i in range(end, end + d.final_failures))
    assert [r.index for r in history.runs if r.degraded] == list(range(d.onset, end + d.final_failures))
    assert all(fails_or_overruns(history, i) for i in range(end, end + d.final_failures))


@pytest.mark.parametrize("seed", range(5))
def test_slowing_storage_slows_the_runs_before_they_fail(seed):
    history = plan_history(random.Random(seed), 60, "slowing_storage")
    d = history.degradation
    assert d is not None

    def speed(r: SimulatedRun) -> float:
        return r.bytes_transferred / r.duration_seconds

    ok = [r for r in history.runs if r.status == "completed" and r.backup_type == "incremental"]
    before = [speed(r) for r in ok if r.index < d.onset]
    late = [speed(r) for r in ok if d.onset + d.length * 2 / 3 <= r.index < d.onset + d.length]
    assert late and statistics.median(late) < 0.85 * statistics.median(before)


@pytest.mark.parametrize("seed", range(5))
def test_growing_data_grows_the_runs_before_they_fail(seed):
    history = plan_history(random.Random(seed), 60, "growing_data")
    d = history.degradation
    assert d is not None
    ok = [r for r in history.runs if r.status == "completed" and r.backup_type == "incremental"]
    before = [r.bytes_transferred for r in ok if r.index < d.onset]
    late = [r.bytes_transferred for r in ok if d.onset + d.length * 2 / 3 <= r.index < d.onset + d.length]
    assert late and statistics.median(late) > 1.3 * statistics.median(before)


def test_the_same_seed_plans_the_same_history():
    assert plan_history(random.Random(7), 30, "flaky_link") == plan_history(random.Random(7), 30, "flaky_link")


def test_overran_is_the_overrun_alert_rules_default():
    before = [_run(i, 100.0) for i in range(3)]
    assert overran(_run(3, 201.0), before) and not overran(_run(3, 200.0), before)
    # Fewer than 3 completed runs of its type before it: no verdict; failed runs are not counted.
    assert not overran(_run(3, 500.0), [*before[:2], _run(2, 10.0, "failed")])
    assert not overran(_run(3, 500.0, backup_type="full"), before)
    # The median of the last 10 only: older, shorter runs no longer count.
    history = [_run(i, 10.0) for i in range(5)] + [_run(5 + i, 100.0) for i in range(10)]
    assert not overran(_run(15, 150.0), history)
