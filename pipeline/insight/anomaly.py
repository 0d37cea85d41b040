"""Is this run unusual for this VM? Robust comparison with its previous runs of the same backup type.

Pure: `detect_anomalies(run, previous)` compares a finished run's duration, size and average speed
with the median of up to 20 previous runs, in units of their median absolute deviation (MAD): a
robust z-score that one earlier outlier cannot drag along, as a mean and standard deviation would.
Sizes, speeds and durations vary by factors (a run twice as big is as unusual as one half as big),
so the score is taken on their logarithms. A flag needs both a large score and a large ratio, so
that a VM whose runs are all alike is not flagged for a 10 % difference.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["HISTORY", "MIN_HISTORY", "Anomaly", "RunFigures", "detect_anomalies"]

HISTORY = 20
"""Previous runs compared with (the most recent ones)."""
MIN_HISTORY = 5
"""Fewer previous runs than this: no verdict."""
SCORE = 3.5
"""Robust z-score from which a run is unusual: |log x - median| / (1.4826 × MAD), over log values."""
RATIO = 1.8
"""…and it must also be this many times above (or below) the median. Both thresholds were chosen on
simulated histories (bench/anomalies.py, seed 5) and are measured on others (seed 9)."""
# A MAD of (nearly) zero would make any difference infinite: it is at least this (≈ 5 % either way).
_MAD_FLOOR = 0.05
_NORMAL = 1.4826  # MAD of a normal distribution, in standard deviations


@dataclass(frozen=True, slots=True)
class RunFigures:
    """What is compared of a run."""

    duration_seconds: float
    bytes_transferred: float
    avg_speed_bps: float


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One unusual figure: how far from usual (score), how many times usual (ratio), and a sentence."""

    metric: str
    value: float
    usual: float
    ratio: float
    score: float
    sentence: str

    def as_dict(self) -> dict:
        return {
            "metric": self.metric,
            "value": round(self.value, 1),
            "usual": round(self.usual, 1),
            "ratio": round(self.ratio, 2),
            "score": round(self.score, 1),
            "sentence": self.sentence,
        }


def _times(ratio: float) -> str:
    return f"{ratio:.1f}×"


_SENTENCES = {
    ("duration_seconds", True): lambda r: f"took {_times(r)} longer than usual",
    ("duration_seconds", False): lambda r: f"finished in {_times(r)} the usual time",
    ("bytes_transferred", True): lambda r: f"transferred {_times(r)} more data than usual",
    ("bytes_transferred", False): lambda r: f"transferred {_times(r)} the usual amount of data",
    ("avg_speed_bps", True): lambda r: f"ran {_times(r)} faster than usual",
    ("avg_speed_bps", False): lambda r: f"ran at {_times(r)} the usual speed",
}


def detect_anomalies(run: RunFigures, previous: Sequence[RunFigures]) -> list[Anomaly]:
    """Unusual figures of `run` against the `previous` runs (most recent first; the first HISTORY count)."""
    history = list(previous[:HISTORY])
    if len(history) < MIN_HISTORY:
        return []
    found = []
    for metric in ("duration_seconds", "bytes_transferred", "avg_speed_bps"):
        values = [getattr(r, metric) for r in history]
        value = getattr(run, metric)
        if value <= 0 or any(v <= 0 for v in values):
            continue  # a run that moved nothing, or lasted no time, has no ratio to compare
        logs = [math.log(v) for v in values]
        centre = statistics.median(logs)
        mad = max(statistics.median(abs(v - centre) for v in logs), _MAD_FLOOR)
        score = abs(math.log(value) - centre) / (_NORMAL * mad)
        usual = math.exp(centre)
        ratio = value / usual
        if score >= SCORE and (ratio >= RATIO or ratio <= 1 / RATIO):
            above = ratio > 1
            found.append(Anomaly(metric, value, usual, ratio, score, _SENTENCES[(metric, above)](ratio)))
    return found
