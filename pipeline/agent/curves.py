"""Pure maths behind simulated jobs: phase timing, throughput curves and per-disk progress."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BOTTLENECK_BY_REPOSITORY",
    "ERROR_MESSAGES",
    "MIB",
    "PHASES",
    "DiskTick",
    "Tick",
    "percent",
    "plan_job",
    "speed_weights",
    "split_across_disks",
    "stage_loads",
]

MIB = 1024 * 1024
PHASES = ("snapshot", "transferring", "finalizing")
ERROR_MESSAGES = (
    "NBD connection reset by peer",
    "VDDK read error on disk: I/O timeout",
    "repository write failed: no space left on device",
    "snapshot consolidation needed: CBT data unavailable",
    "TLS handshake with the repository timed out",
)


@dataclass(frozen=True)
class DiskTick:
    """One disk's state at a tick."""

    disk_index: int
    bytes_transferred: int
    total_bytes: int
    transfer_speed_bps: int
    progress_percent: float


@dataclass(frozen=True)
class Tick:
    """A job's state `offset` seconds after it started, as one telemetry update reports it."""

    offset: float
    phase: str
    bytes_transferred: int
    total_bytes: int
    transfer_speed_bps: int
    progress_percent: float
    worker_count: int
    status: str = "running"
    error_message: str | None = None
    disks: tuple[DiskTick, ...] = ()

    def as_update(self) -> dict[str, Any]:
        """The job-level update body (no timestamp: the sender stamps it when it is due)."""
        body: dict[str, Any] = {
            "bytes_transferred": self.bytes_transferred,
            "total_bytes": self.total_bytes,
            "transfer_speed_bps": self.transfer_speed_bps,
            "progress_percent": self.progress_percent,
            "current_phase": self.phase,
            "status": self.status,
            "worker_count": self.worker_count,
        }
        if self.error_message:
            body["error_message"] = self.error_message
        return body

    def disk_updates(self) -> list[dict[str, Any]]:
        """One update body per disk (always "running": only the job-level update ends a job)."""
        return [
            {
                "bytes_transferred": disk.bytes_transferred,
                "total_bytes": disk.total_bytes,
                "transfer_speed_bps": disk.transfer_speed_bps,
                "progress_percent": disk.progress_percent,
                "current_phase": self.phase,
                "status": "running",
                "disk_index": disk.disk_index,
                "worker_count": self.worker_count,
            }
            for disk in self.disks
        ]


def percent(done: int, total: int) -> float:
    """Progress to two decimals, rounded down so only a finished transfer reads 100."""
    if total <= 0:
        return 0.0
    return min(100.0, (done * 10_000 // total) / 100)


def _phase_counts(n: int) -> tuple[int, int, int]:
    """Ticks in snapshot, transferring and finalizing: ~5% / ~90% / ~5%, at least one each."""
    snapshot = max(1, round(n * 0.05))
    finalizing = max(1, round(n * 0.05))
    return snapshot, n - snapshot - finalizing, finalizing


def speed_weights(rng: random.Random, n: int) -> tuple[list[float], list[str]]:
    """Relative throughput of each of `n` ticks (n >= 3) and its phase."""
    snapshot, transferring, finalizing = _phase_counts(n)
    weights: list[float] = []
    phases = ["snapshot"] * snapshot + ["transferring"] * transferring + ["finalizing"] * finalizing
    # Snapshot creation and the final metadata/catalogue writes move little data.
    weights += [rng.uniform(0.0, 0.05) for _ in range(snapshot)]
    level = 0.0  # log of the throughput level: a mean-reverting random walk around the job's base speed
    slowdown, slow_ticks = 1.0, 0
    for i in range(transferring):
        level = 0.85 * level + rng.gauss(0.0, 0.12)
        if slow_ticks == 0 and rng.random() < 0.04:
            # A dip: a busy datastore, a competing job, a congested uplink.
            slowdown, slow_ticks = rng.uniform(0.15, 0.5), rng.randint(2, 6)
        elif slow_ticks == 0 and rng.random() < 0.01:
            # A stall: a retried read, a lock on the repository.
            slowdown, slow_ticks = 0.0, rng.randint(1, 3)
        ramp = min(1.0, (i + 1) / 3)  # workers and TCP windows take a few seconds to open up
        weights.append(math.exp(level) * ramp * (slowdown if slow_ticks else 1.0))
        slow_ticks = max(0, slow_ticks - 1)
    weights += [rng.uniform(0.03, 0.12) for _ in range(finalizing)]
    return weights, phases


def split_across_disks(rng: random.Random, cumulative: Sequence[int], sizes: Sequence[int]) -> list[list[int]]:
    """Per-tick, per-disk cumulative bytes summing to `cumulative`, each disk monotonic and within its size.

    Disks stream in parallel at a roughly equal share each, so small disks finish first.
    """
    if cumulative and cumulative[-1] > sum(sizes):
        raise ValueError("more bytes transferred than the disks hold")
    done = [0] * len(sizes)
    rows: list[list[int]] = []
    previous = 0
    for total in cumulative:
        left = total - previous
        previous = total
        while left > 0:
            active = [i for i, size in enumerate(sizes) if done[i] < size]
            shares = [rng.uniform(0.7, 1.3) for _ in active]
            whole = sum(shares)
            given = 0
            for i, share in zip(active, shares, strict=True):
                take = min(sizes[i] - done[i], int(left * share / whole))
                done[i] += take
                given += take
            if given == 0:
                # Crumbs smaller than one byte per disk: hand them to the first disk with room.
                i = active[0]
                given = min(left, sizes[i] - done[i])
                done[i] += given
            left -= given
        rows.append(list(done))
    return rows


def plan_job(
    rng: random.Random,
    duration: float,
    total_bytes: int,
    fail: bool = False,
    *,
    interval: float = 1.0,
    disks: Sequence[tuple[int, int]] = (),
) -> list[Tick]:
    """Every update of one job: a zero tick at offset 0, then one tick per `interval` until it ends.

    A completed job ends at `total_bytes` with status "completed"; a failing one stops partway
    through "transferring" with status "failed". `disks` ((disk_index, size_bytes), sizes summing
    to `total_bytes`) adds per-disk state to every tick.
    """
    if interval <= 0 or duration <= 0:
        raise ValueError("duration and interval must be positive")
    if disks and sum(size for _, size in disks) != total_bytes:
        raise ValueError("disk sizes must add up to total_bytes")
    n = max(3, round(duration / interval))
    weights, phases = speed_weights(rng, n)
    workers = rng.randint(2, 8)
    worker_counts = []
    for _ in range(n):
        if rng.random() < 0.05:
            workers = min(8, max(2, workers + rng.choice((-1, 1))))
        worker_counts.append(workers)
    # Finalizing weights are never zero, so the sum is positive.
    whole = sum(weights)
    running = 0.0
    cumulative = []
    for weight in weights:
        running += weight
        cumulative.append(min(total_bytes, int(total_bytes * running / whole)))
    cumulative[-1] = total_bytes  # float rounding must not leave a completed job a byte short
    end = n
    error: str | None = None
    if fail:
        transferring = [k for k, phase in enumerate(phases) if phase == "transferring"]
        end = rng.choice(transferring) + 1
        before = cumulative[end - 2] if end >= 2 else 0
        # The failing tick gets part of its planned bytes through before the connection drops.
        cumulative[end - 1] = before + int((cumulative[end - 1] - before) * rng.random())
        error = rng.choice(ERROR_MESSAGES)
    cumulative = [0, *cumulative[:end]]
    per_disk = split_across_disks(rng, cumulative, [size for _, size in disks]) if disks else []
    ticks = []
    for k, done in enumerate(cumulative):
        last = k == end
        # Speed is what moved since the previous tick, so the curve and the byte counter agree.
        speed = 0 if k == 0 else round((done - cumulative[k - 1]) / interval)
        status = ("failed" if fail else "completed") if last else "running"
        disk_ticks = tuple(
            DiskTick(
                disk_index=index,
                bytes_transferred=per_disk[k][j],
                total_bytes=size,
                transfer_speed_bps=0 if k == 0 else round((per_disk[k][j] - per_disk[k - 1][j]) / interval),
                progress_percent=percent(per_disk[k][j], size),
            )
            for j, (index, size) in enumerate(disks)
        )
        ticks.append(
            Tick(
                offset=k * interval,
                phase=phases[max(0, k - 1)],
                bytes_transferred=done,
                total_bytes=total_bytes,
                transfer_speed_bps=speed,
                progress_percent=100.0 if status == "completed" else percent(done, total_bytes),
                worker_count=worker_counts[max(0, k - 1)],
                status=status,
                error_message=error if last else None,
                disks=disk_ticks,
            )
        )
    return ticks


BOTTLENECK_BY_REPOSITORY = {
    "repo-primary": "source_read",  # a local repository: the production datastore is the slow part
    "repo-offsite": "target_write",  # a slow remote repository: writes queue up
    "s3-archive": "network",  # object storage over a WAN link
}
"""Which stage of the data path limits a job, by its repository (the simulator's ground truth)."""


def stage_loads(rng: random.Random, phase: str, bottleneck: str) -> dict[str, float]:
    """How busy each stage is during one tick (%): the bottleneck stage near saturation while data
    moves, the others well below; the snapshot phase mostly reads, finalizing mostly writes."""
    loads = {stage: rng.uniform(10.0, 55.0) for stage in ("source_read", "processing", "network", "target_write")}
    if phase == "transferring":
        loads[bottleneck] = rng.uniform(70.0, 97.0)
    elif phase == "snapshot":
        loads["source_read"] = rng.uniform(20.0, 60.0)
    else:
        loads["target_write"] = rng.uniform(30.0, 65.0)
    return {stage: round(value, 1) for stage, value in loads.items()}
