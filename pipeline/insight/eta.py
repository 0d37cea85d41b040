"""ETA of a running job from its progress curve, blended with the VM's past speed early in the job.

Pure: `estimate_eta(samples, …)` takes `(seconds, progress %)` pairs in time order and answers how many
seconds are left, or why it cannot tell yet. `naive_eta` is the reference operators know from every
console: remaining bytes ÷ current speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MIN_PROGRESS", "MIN_UPDATES", "EtaEstimate", "estimate_eta", "naive_eta"]

MIN_PROGRESS = 5.0
"""No ETA below this progress (%): the snapshot and the first seconds of transfer say little."""
MIN_UPDATES = 5
"""No ETA from fewer updates than this."""
# The recent rate is measured over this share of the time since the transfer started (at least
# _MIN_WINDOW seconds): long enough to average out the ±30 % noise, and it leaves out the transfer's
# ramp-up. Both weights were chosen on simulated jobs of seeds 11 and 23 and are measured on seed 7
# (bench/eta.py): a longer window or more weight on the recent rate changed the error by < 2 points.
_WINDOW_SHARE = 0.5
_MIN_WINDOW = 60.0
# How much the recent rate counts against the rate since the start of the transfer.
_RECENT_WEIGHT = 0.8
# The VM's past speed counts fully at 0 % and not at all from this progress on.
_HISTORY_UNTIL = 50.0


@dataclass(frozen=True, slots=True)
class EtaEstimate:
    """Seconds left (None with a reason when there is no estimate yet) and how it was made."""

    eta_seconds: float | None
    reason: str | None = None
    rate_percent_per_s: float | None = None
    history_weight: float = 0.0


def _progress_at(samples: Sequence[tuple[float, float]], t: float) -> float:
    """Progress at time `t`, interpolated between the samples around it."""
    before = samples[0]
    for sample in samples:
        if sample[0] >= t:
            t0, p0 = before
            t1, p1 = sample
            return p1 if t1 == t0 else p0 + (p1 - p0) * (t - t0) / (t1 - t0)
        before = sample
    return samples[-1][1]


def estimate_eta(
    samples: Sequence[tuple[float, float]],
    *,
    history_speed_bps: float | None = None,
    total_bytes: int | None = None,
    history_tail_share: float = 0.0,
) -> EtaEstimate:
    """Seconds until the job ends, from `(seconds, progress %)` samples in time order.

    The rate is a blend of the rate since the transfer started (stable under noise) and the rate
    over the recent window (follows a slow phase); early in the job it is blended with the VM's
    past average speed of the same backup type (`history_speed_bps`, for `total_bytes`), which
    fades out by 50 % progress. `history_tail_share` is the share of past runs' duration spent after
    their transfer (finalizing: catalogue and metadata writes), which bytes alone cannot foresee.
    """
    if len(samples) < MIN_UPDATES:
        return EtaEstimate(None, f"fewer than {MIN_UPDATES} updates so far")
    now, progress = samples[-1]
    if progress < MIN_PROGRESS:
        return EtaEstimate(None, f"below {MIN_PROGRESS:.0f} % progress")
    if progress >= 100.0:
        return EtaEstimate(0.0, None)
    moving = next((i for i, (_, p) in enumerate(samples) if p > 0), len(samples) - 1)
    start = samples[max(0, moving - 1)][0]
    elapsed = now - start
    if elapsed <= 0:
        return EtaEstimate(None, "no time has passed since the transfer started")
    overall = progress / elapsed
    window = max(_MIN_WINDOW, _WINDOW_SHARE * elapsed)
    since = max(start, now - window)
    recent = (progress - _progress_at(samples, since)) / (now - since) if now > since else overall
    rate = (1 - _RECENT_WEIGHT) * overall + _RECENT_WEIGHT * recent
    weight = 0.0
    if history_speed_bps and total_bytes and history_speed_bps > 0 and total_bytes > 0:
        weight = max(0.0, 1.0 - progress / _HISTORY_UNTIL)
        rate = (1 - weight) * rate + weight * (100.0 * history_speed_bps / total_bytes)
    if rate <= 0:
        return EtaEstimate(None, "no progress in the recent window", rate, weight)
    transfer_left = (100.0 - progress) / rate
    share = min(max(history_tail_share, 0.0), 0.5)
    # The tail is a share of the whole run, whose length is what has passed plus the transfer left.
    tail = share * (now - samples[0][0] + transfer_left) / (1.0 - share)
    return EtaEstimate(transfer_left + tail, None, rate, weight)


def naive_eta(bytes_transferred: int, total_bytes: int, speed_bps: int) -> float | None:
    """Remaining bytes ÷ current speed (None when the job is not moving)."""
    if speed_bps <= 0 or total_bytes <= 0:
        return None
    return max(0, total_bytes - bytes_transferred) / speed_bps
