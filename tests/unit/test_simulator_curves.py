"""Unit tests of the simulator's pure curve maths (pipeline.agent.curves)."""

from __future__ import annotations

import random

import pytest

from pipeline.agent.curves import PHASES, Tick, percent, plan_job, split_across_disks

GIB = 2**30


def _plan(seed: int, *, fail: bool = False, duration: float = 120.0, total: int = 20 * GIB, **kw) -> list[Tick]:
    return plan_job(random.Random(seed), duration, total, fail, **kw)


@pytest.mark.parametrize("seed", range(20))
def test_completed_job_bytes_monotonic_and_end_at_total(seed: int) -> None:
    ticks = _plan(seed)
    done = [t.bytes_transferred for t in ticks]
    assert done[0] == 0
    assert done == sorted(done)
    assert done[-1] == ticks[-1].total_bytes == 20 * GIB
    assert ticks[-1].status == "completed"
    assert ticks[-1].progress_percent == 100.0
    assert all(t.status == "running" for t in ticks[:-1])
    assert all(t.progress_percent < 100.0 for t in ticks[:-1])


@pytest.mark.parametrize("seed", range(20))
def test_speed_matches_bytes_moved_per_interval(seed: int) -> None:
    ticks = _plan(seed, interval=2.0)
    assert [t.offset for t in ticks[:3]] == [0.0, 2.0, 4.0]
    for before, after in zip(ticks, ticks[1:], strict=False):
        assert after.transfer_speed_bps == round((after.bytes_transferred - before.bytes_transferred) / 2.0)
        assert after.transfer_speed_bps >= 0


@pytest.mark.parametrize("seed", range(20))
def test_progress_within_bounds_and_consistent(seed: int) -> None:
    for tick in _plan(seed) + _plan(seed, fail=True):
        assert 0.0 <= tick.progress_percent <= 100.0
        if tick.status != "completed":
            assert tick.progress_percent == percent(tick.bytes_transferred, tick.total_bytes)


@pytest.mark.parametrize("seed", range(20))
def test_phases_in_order_and_all_present(seed: int) -> None:
    phases = [t.phase for t in _plan(seed)]
    ranks = [PHASES.index(phase) for phase in phases]
    assert ranks == sorted(ranks)
    assert set(phases) == set(PHASES)
    # Snapshot and finalizing are short; the bulk of the run is transferring.
    assert phases.count("transferring") > 0.8 * len(phases)


def test_transferring_is_much_faster_than_snapshot_and_finalizing() -> None:
    ticks = _plan(7, duration=180.0)
    mean = {
        p: sum(t.transfer_speed_bps for t in ticks[1:] if t.phase == p) / sum(1 for t in ticks[1:] if t.phase == p)
        for p in PHASES
    }
    assert mean["transferring"] > 3 * mean["snapshot"]
    assert mean["transferring"] > 3 * mean["finalizing"]


def test_transfer_speed_fluctuates() -> None:
    speeds = [t.transfer_speed_bps for t in _plan(3, duration=180.0) if t.phase == "transferring"][3:]
    assert len(set(speeds)) > len(speeds) // 2
    assert max(speeds) > 1.3 * min(speeds)


@pytest.mark.parametrize("seed", range(30))
def test_failing_job_stops_in_transferring_before_total(seed: int) -> None:
    ticks = _plan(seed, fail=True)
    last = ticks[-1]
    assert last.status == "failed"
    assert last.phase == "transferring"
    assert last.error_message
    assert last.bytes_transferred < last.total_bytes
    assert last.progress_percent < 100.0
    assert all(t.status == "running" and t.error_message is None for t in ticks[:-1])
    done = [t.bytes_transferred for t in ticks]
    assert done == sorted(done)


def test_worker_count_between_2_and_8() -> None:
    for seed in range(20):
        assert all(2 <= t.worker_count <= 8 for t in _plan(seed))


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    assert _plan(42, fail=True) == _plan(42, fail=True)
    assert _plan(42) != _plan(43)


def test_tick_count_follows_duration_and_interval() -> None:
    assert len(_plan(1, duration=60.0, interval=1.0)) == 61  # the zero tick plus one per second
    assert len(_plan(1, duration=60.0, interval=0.5)) == 121
    assert len(_plan(1, duration=1.0, interval=1.0)) == 4  # never fewer than one tick per phase


def test_zero_byte_job_completes() -> None:
    ticks = _plan(1, total=0)
    assert all(t.bytes_transferred == 0 for t in ticks)
    assert ticks[-1].status == "completed" and ticks[-1].progress_percent == 100.0


@pytest.mark.parametrize("seed", range(10))
def test_per_disk_progress_sums_to_job_and_finishes_each_disk(seed: int) -> None:
    disks = [(0, 12 * GIB), (1, 5 * GIB), (2, 3 * GIB)]
    ticks = _plan(seed, disks=disks)
    for tick in ticks:
        assert sum(d.bytes_transferred for d in tick.disks) == tick.bytes_transferred
        for disk, (index, size) in zip(tick.disks, disks, strict=True):
            assert disk.disk_index == index and disk.total_bytes == size
            assert 0 <= disk.bytes_transferred <= size
            assert 0.0 <= disk.progress_percent <= 100.0
    for j in range(len(disks)):
        column = [t.disks[j].bytes_transferred for t in ticks]
        assert column == sorted(column)
        assert ticks[-1].disks[j].progress_percent == 100.0


def test_per_disk_updates_never_end_the_job() -> None:
    ticks = _plan(5, fail=True, disks=[(0, 15 * GIB), (3, 5 * GIB)])
    updates = ticks[-1].disk_updates()
    assert [u["disk_index"] for u in updates] == [0, 3]
    assert all(u["status"] == "running" for u in updates)
    assert ticks[-1].as_update()["status"] == "failed"
    assert "disk_index" not in ticks[-1].as_update()


def test_disk_sizes_must_add_up() -> None:
    with pytest.raises(ValueError, match="add up"):
        _plan(1, disks=[(0, GIB)])


def test_split_across_disks_small_disks_finish_first() -> None:
    rows = split_across_disks(random.Random(1), [0, 100, 300, 1000, 1100], [1000, 100])
    assert rows[-1] == [1000, 100]
    assert rows[2][1] == 100  # the small disk is done long before the large one
    assert all(sum(row) == total for row, total in zip(rows, [0, 100, 300, 1000, 1100], strict=True))


def test_split_across_disks_rejects_overflow() -> None:
    with pytest.raises(ValueError):
        split_across_disks(random.Random(1), [0, 11], [5, 5])


def test_percent_rounds_down() -> None:
    assert percent(0, 0) == 0.0
    assert percent(99_999, 100_000) == 99.99
    assert percent(100_000, 100_000) == 100.0
    assert percent(1, 3) == 33.33
