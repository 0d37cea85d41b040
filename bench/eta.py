"""ETA accuracy against ground truth: the simulator's jobs, whose true end is known, at 25/50/75 % progress.

What it measures
    `--jobs` jobs planned by the simulator's own curve model (`pipeline.agent.curves.plan_job`: a snapshot
    phase, a transfer whose speed wanders ±30 % around the job's level with dips and stalls, a
    finalizing phase), one update every 5 s. Each job belongs to a VM whose past runs of the same backup
    type (5 of them, planned by the same model) averaged a speed within ±20 % of this run's; their
    average speed and the share of their duration spent finalizing are the history the API reads.
    At the first update at or past 25, 50 and 75 %
    progress, three estimates of the time left are compared with the true time left (the job's last
    update minus that update's time):
      * ours: `pipeline.insight.eta.estimate_eta` with the VM's past speed;
      * ours without the VM's history;
      * naive: remaining bytes ÷ the current speed (what most consoles show).
    Prints the median and 90th percentile of the absolute percentage error, and how often each could
    answer at all (the naive estimate cannot while the job stalls).

Target (from the issue): median error at 50 % <= 15 %, and ours better than naive at every checkpoint.

Usage
    .venv/bin/python bench/eta.py [--jobs 500] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys

import _common as c

from pipeline.agent.curves import MIB, plan_job
from pipeline.insight.eta import estimate_eta, naive_eta

CHECKPOINTS = (25.0, 50.0, 75.0)
INTERVAL = 5.0


def _history(rng: random.Random, level: float, runs: int = 5) -> tuple[float, float]:
    """What the API reads from the VM's rolled-up past runs of this backup type: their average speed
    (avg_speed_bps, bytes over the whole run) and the share of their duration spent finalizing."""
    speeds, shares = [], []
    for _ in range(runs):
        total = int(rng.uniform(50, 600) * 1024 * MIB)
        ticks = plan_job(rng, total / (level * rng.uniform(0.8, 1.2)) / 0.9, total, interval=INTERVAL)
        duration = ticks[-1].offset
        speeds.append(total / duration)
        shares.append(sum(INTERVAL for t in ticks[1:] if t.phase == "finalizing") / duration)
    return statistics.mean(speeds), statistics.mean(shares)


def evaluate(jobs: int, seed: int) -> dict[str, dict[float, list[float | None]]]:
    rng = random.Random(seed)
    errors: dict[str, dict[float, list[float | None]]] = {
        name: {p: [] for p in CHECKPOINTS} for name in ("ours", "ours without history", "naive")
    }
    for _ in range(jobs):
        level = rng.uniform(50, 400) * MIB  # the VM's usual speed
        vm_speed, tail_share = _history(rng, level)
        this_speed = level * rng.uniform(0.8, 1.2)  # this run's level differs from the usual
        total = int(rng.uniform(50, 600) * 1024 * MIB)
        duration = total / this_speed / 0.9  # the transfer takes ~90 % of the job's updates
        ticks = plan_job(rng, duration, total, interval=INTERVAL)
        end = ticks[-1].offset
        samples = [(t.offset, t.progress_percent) for t in ticks]
        for checkpoint in CHECKPOINTS:
            k = next(i for i, t in enumerate(ticks) if t.progress_percent >= checkpoint)
            truth = end - ticks[k].offset
            if truth <= 0:
                continue
            tick = ticks[k]
            ours = estimate_eta(
                samples[: k + 1], history_speed_bps=vm_speed, total_bytes=total, history_tail_share=tail_share
            ).eta_seconds
            alone = estimate_eta(samples[: k + 1]).eta_seconds
            naive = naive_eta(tick.bytes_transferred, total, tick.transfer_speed_bps)
            for name, value in (("ours", ours), ("ours without history", alone), ("naive", naive)):
                errors[name][checkpoint].append(None if value is None else abs(value - truth) / truth)
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    errors = evaluate(args.jobs, args.seed)
    rows = []
    medians: dict[tuple[str, float], float] = {}
    for name, by_checkpoint in errors.items():
        for checkpoint, values in by_checkpoint.items():
            answered = [v for v in values if v is not None]
            med = statistics.median(answered) if answered else float("nan")
            medians[(name, checkpoint)] = med
            p90 = c.percentile(answered, 90) if answered else float("nan")
            rows.append([name, f"{checkpoint:.0f} %", f"{med:.1%}", f"{p90:.1%}", f"{len(answered) / len(values):.0%}"])
    print(
        c.table(
            ["estimator", "progress", "median abs. error", "p90 abs. error", "answered"],
            rows,
            f"ETA error against the true time left, {args.jobs} simulated jobs (seed {args.seed}), an update every 5 s",
        )
    )
    at_50 = medians[("ours", 50.0)]
    better = all(medians[("ours", p)] < medians[("naive", p)] for p in CHECKPOINTS)
    print(
        c.table(
            ["target", "measured", "verdict"],
            [
                ["median error at 50 % <= 15 %", f"{at_50:.1%}", c.verdict(at_50 <= 0.15)],
                [
                    "ours better than naive at 25, 50 and 75 %",
                    ", ".join(f"{medians[('ours', p)]:.1%} vs {medians[('naive', p)]:.1%}" for p in CHECKPOINTS),
                    c.verdict(better),
                ],
            ],
            "\nTargets",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
