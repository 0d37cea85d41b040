"""Anomaly flags against planted ground truth: precision, recall and false positives on simulated VM histories.

What it measures
    `--vms` VMs with 25 runs each of one backup type. A VM has its usual speed and its usual amount of
    changed data; each run varies around them (size ±20 %, speed ±12 %, lognormal) and is played
    through the simulator's curve model (`pipeline.agent.curves.plan_job`, an update every 30 s) and
    the rollup's maths (`rollup_metrics`): its duration, bytes and time-weighted speed are what the
    rollup would store. In the last 5 runs of every VM, one run in five gets a planted anomaly:
      * size × 2.5–6 (a mass change, e.g. encryption by ransomware), or × 0.1–0.3 (a disk left out);
      * speed × 0.2–0.45 (a slow repository or link), or × 2.5–4 (a cache);
    and 1 in 20 of the 20 earlier runs is unusual too, as real histories are (robustness).
    Each of the last 5 runs is checked against the 20 runs before it by
      * ours: `pipeline.insight.anomaly.detect_anomalies` (median/MAD of logs, score >= 3.5, ratio >= 1.8);
      * mean ± 3 standard deviations (the textbook detector, not robust), same ratio rule;
      * more than 2× or less than half of the previous run (what people eyeball).
    A planted run counts as found when the planted figure (size or speed) is flagged; any flag on a
    clean run is a false positive.

Targets (from the issue): precision >= 0.9 and recall >= 0.9; the false-positive rate on clean runs is printed.

Usage
    .venv/bin/python bench/anomalies.py [--vms 300] [--seed 9]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from collections.abc import Callable, Sequence

import _common as c

from pipeline.agent.curves import MIB, plan_job
from pipeline.insight.anomaly import RATIO, Anomaly, RunFigures, detect_anomalies
from pipeline.rollup.metrics import JobTotals, SampleColumns, rollup_metrics

RUNS = 25
EVALUATED = 5
KINDS = (("bytes_transferred", 2.5, 6.0), ("bytes_transferred", 0.1, 0.3), ("avg_speed_bps", 0.2, 0.45),
         ("avg_speed_bps", 2.5, 4.0))  # fmt: skip


def run_figures(rng: random.Random, size: float, speed: float) -> RunFigures:
    """Play one run through the simulator's curves and the rollup's maths."""
    ticks = plan_job(rng, size / speed / 0.9, int(size), interval=30.0)
    samples = SampleColumns()
    samples.extend(
        [t.offset for t in ticks],
        [t.transfer_speed_bps for t in ticks],
        [t.progress_percent for t in ticks],
        [t.phase for t in ticks],
        [t.bytes_transferred for t in ticks],
        [t.total_bytes for t in ticks],
        [t.worker_count for t in ticks],
    )
    totals = JobTotals.last_of(samples)
    metrics = rollup_metrics(samples, totals=totals, final_status="completed", started_at=None, completed_at=None)
    return RunFigures(metrics["duration_seconds"], metrics["bytes_transferred"], metrics["avg_speed_bps"])


def simulate(vms: int, seed: int) -> list[tuple[list[RunFigures], RunFigures, str | None]]:
    """(previous runs, most recent first; the run checked; the planted metric or None)."""
    rng = random.Random(seed)
    cases = []
    for _ in range(vms):
        level, usual = rng.uniform(50, 400) * MIB, rng.uniform(20, 300) * 1024 * MIB
        runs: list[tuple[RunFigures, str | None]] = []
        for n in range(RUNS):
            size, speed = usual * math.exp(rng.gauss(0, 0.2)), level * math.exp(rng.gauss(0, 0.12))
            planted = None
            if (n >= RUNS - EVALUATED and rng.random() < 0.2) or (n < RUNS - EVALUATED and rng.random() < 0.05):
                metric, low, high = rng.choice(KINDS)
                factor = rng.uniform(low, high)
                size, speed = (size * factor, speed) if metric == "bytes_transferred" else (size, speed * factor)
                planted = metric
            runs.append((run_figures(rng, size, speed), planted))
        for n in range(RUNS - EVALUATED, RUNS):
            previous = [r for r, _ in reversed(runs[n - 20 : n])]
            cases.append((previous, runs[n][0], runs[n][1]))
    return cases


def mean_std(run: RunFigures, previous: Sequence[RunFigures]) -> list[str]:
    flags = []
    for metric in ("duration_seconds", "bytes_transferred", "avg_speed_bps"):
        values = [getattr(r, metric) for r in previous]
        mean, std = statistics.mean(values), statistics.stdev(values)
        value = getattr(run, metric)
        ratio = value / mean
        if abs(value - mean) > 3 * std and (ratio >= RATIO or ratio <= 1 / RATIO):
            flags.append(metric)
    return flags


def previous_run(run: RunFigures, previous: Sequence[RunFigures]) -> list[str]:
    flags = []
    for metric in ("duration_seconds", "bytes_transferred", "avg_speed_bps"):
        ratio = getattr(run, metric) / getattr(previous[0], metric)
        if ratio > 2 or ratio < 0.5:
            flags.append(metric)
    return flags


def score(cases, detector: Callable[[RunFigures, Sequence[RunFigures]], list[str]]) -> dict[str, float]:
    tp = fp = fn = clean = 0
    for previous, run, planted in cases:
        flags = detector(run, previous)
        if planted is None:
            clean += 1
            fp += bool(flags)
        elif planted in flags:
            tp += 1
        else:
            fn += 1
            fp += bool(flags)  # flagged, but not for what was planted
    return {
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "fpr": sum(1 for p, r, x in cases if x is None and detector(r, p)) / clean if clean else float("nan"),
        "planted": tp + fn,
        "clean": clean,
    }


def ours(run: RunFigures, previous: Sequence[RunFigures]) -> list[str]:
    found: list[Anomaly] = detect_anomalies(run, previous)
    return [a.metric for a in found]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=300)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    cases = simulate(args.vms, args.seed)
    results = {
        "ours: median/MAD (robust)": score(cases, ours),
        "mean ± 3 std": score(cases, mean_std),
        "2× the previous run": score(cases, previous_run),
    }
    first = next(iter(results.values()))
    rows = [[name, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['fpr']:.2%}"] for name, r in results.items()]
    print(
        c.table(
            ["detector", "precision", "recall", "false positives on clean runs"],
            rows,
            f"Anomaly flags, {args.vms} VMs x {EVALUATED} checked runs ({first['planted']} planted, "
            f"{first['clean']} clean), seed {args.seed}",
        )
    )
    mine = results["ours: median/MAD (robust)"]
    print(
        c.table(
            ["target", "measured", "verdict"],
            [
                ["precision >= 0.9", f"{mine['precision']:.3f}", c.verdict(mine["precision"] >= 0.9)],
                ["recall >= 0.9", f"{mine['recall']:.3f}", c.verdict(mine["recall"] >= 0.9)],
            ],
            "\nTargets",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
