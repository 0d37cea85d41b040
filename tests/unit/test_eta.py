"""ETA of a running job: when it answers, what it blends, and that it beats the naive estimate."""

from __future__ import annotations

import random
import statistics

import pytest

from pipeline.agent.curves import MIB, plan_job
from pipeline.insight.eta import MIN_PROGRESS, estimate_eta, naive_eta


def steady(progress_per_s: float, seconds: int, start: float = 0.0) -> list[tuple[float, float]]:
    return [(t, min(100.0, start + progress_per_s * t)) for t in range(0, seconds + 1, 5)]


def test_no_estimate_before_enough_updates_or_progress():
    assert estimate_eta([(0, 0.0), (5, 10.0)]).reason == "fewer than 5 updates so far"
    early = estimate_eta(steady(0.1, 40))
    assert early.eta_seconds is None and f"{MIN_PROGRESS:.0f} %" in early.reason


def test_a_steady_job_is_estimated_exactly():
    estimate = estimate_eta(steady(0.1, 400))  # 40 % after 400 s at 0.1 %/s: 600 s to go
    assert estimate.eta_seconds == pytest.approx(600, rel=0.01)


def test_a_finished_transfer_has_nothing_left_but_the_tail():
    assert estimate_eta(steady(1.0, 100)).eta_seconds == 0.0


def test_the_vms_past_speed_counts_early_and_fades_out_by_half_way():
    total = 100 * MIB
    # Past runs went at 1 %/s of this job's size; this run so far at 0.1 %/s.
    early = estimate_eta(steady(0.1, 100, start=0.0), history_speed_bps=total / 100, total_bytes=total)
    assert early.history_weight > 0.5 and early.eta_seconds < 900 * 0.5
    late = estimate_eta(steady(0.1, 600), history_speed_bps=total / 100, total_bytes=total)
    assert late.history_weight == 0.0 and late.eta_seconds == pytest.approx(400, rel=0.01)


def test_the_finalizing_share_of_past_runs_is_added():
    plain = estimate_eta(steady(0.1, 500)).eta_seconds
    with_tail = estimate_eta(steady(0.1, 500), history_tail_share=0.1).eta_seconds
    # The whole run is 1,000 s of transfer; 10 % of the run after it: 1,000 / 0.9 * 0.1 ≈ 111 s.
    assert with_tail - plain == pytest.approx(111, rel=0.02)


def test_a_stalled_job_has_no_naive_estimate_but_still_ours():
    samples = steady(0.1, 300) + [(305 + 5 * i, 30.0) for i in range(12)]
    assert naive_eta(30, 100, 0) is None
    assert estimate_eta(samples).eta_seconds is not None


def test_on_simulated_jobs_ours_beats_the_naive_estimate_at_every_checkpoint():
    # The full-size figures are printed by bench/eta.py; this keeps the claim from regressing.
    rng = random.Random(3)
    ours: dict[int, list[float]] = {25: [], 50: [], 75: []}
    naive: dict[int, list[float]] = {25: [], 50: [], 75: []}
    for _ in range(60):
        total = int(rng.uniform(50, 500) * 1024 * MIB)
        ticks = plan_job(rng, total / (rng.uniform(50, 400) * MIB), total, interval=5.0)
        samples = [(t.offset, t.progress_percent) for t in ticks]
        for checkpoint in ours:
            k = next(i for i, t in enumerate(ticks) if t.progress_percent >= checkpoint)
            truth = ticks[-1].offset - ticks[k].offset
            ours[checkpoint].append(abs(estimate_eta(samples[: k + 1]).eta_seconds - truth) / truth)
            guess = naive_eta(ticks[k].bytes_transferred, total, ticks[k].transfer_speed_bps)
            naive[checkpoint].append(1.0 if guess is None else abs(guess - truth) / truth)
    for checkpoint in ours:
        assert statistics.median(ours[checkpoint]) < statistics.median(naive[checkpoint])
    assert statistics.median(ours[50]) <= 0.15
