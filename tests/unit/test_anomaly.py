"""Anomaly flags: robust to one odd run in the history, silent without enough history, worded for people."""

from __future__ import annotations

from pipeline.insight.anomaly import MIN_HISTORY, RunFigures, detect_anomalies

USUAL = [RunFigures(600 + 10 * (n % 5), 100e9 * (1 + 0.02 * (n % 3)), 170e6) for n in range(20)]


def test_a_usual_run_has_no_flag():
    assert detect_anomalies(RunFigures(620, 101e9, 168e6), USUAL) == []


def test_a_bigger_longer_run_is_flagged_with_sentences():
    flags = {a.metric: a for a in detect_anomalies(RunFigures(1500, 400e9, 170e6), USUAL)}
    assert set(flags) == {"duration_seconds", "bytes_transferred"}
    assert flags["bytes_transferred"].sentence == "transferred 3.9× more data than usual"
    assert flags["duration_seconds"].sentence == "took 2.4× longer than usual"
    assert all(a.score >= 3.5 for a in flags.values())


def test_a_slow_run_is_flagged_by_its_speed():
    [flag] = [a for a in detect_anomalies(RunFigures(610, 100e9, 40e6), USUAL) if a.metric == "avg_speed_bps"]
    assert flag.sentence == "ran at 0.2× the usual speed"


def test_one_odd_run_in_the_history_does_not_hide_the_next():
    history = [RunFigures(6000, 1000e9, 170e6), *USUAL[:19]]
    assert {a.metric for a in detect_anomalies(RunFigures(1500, 400e9, 170e6), history)} == {
        "duration_seconds",
        "bytes_transferred",
    }


def test_no_verdict_without_enough_history():
    assert detect_anomalies(RunFigures(6000, 1000e9, 1e6), USUAL[: MIN_HISTORY - 1]) == []


def test_identical_runs_do_not_make_a_small_difference_an_anomaly():
    same = [RunFigures(600, 100e9, 170e6)] * 20
    assert detect_anomalies(RunFigures(700, 110e9, 160e6), same) == []


def test_a_run_that_moved_nothing_is_not_compared():
    assert detect_anomalies(RunFigures(0, 0, 0), USUAL) == []
