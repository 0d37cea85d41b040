"""One bad job never stops the others: failures are recorded, retried with back-off, then set aside."""

from __future__ import annotations

import dataclasses
import time

import pytest
from sqlalchemy import bindparam, select

from pipeline.db.tables import backup_jobs
from pipeline.scheduler import SchedulerJobs
from tests.support.probes import count_points, count_series, update_body

DAY_NS = 86_400 * 10**9


@pytest.fixture
def strict_scheduler(settings):
    """A scheduler that retries a failed rollup at once and gives up after two attempts."""
    scheduler = dataclasses.replace(
        settings.scheduler, rollup_batch=1_000_000, rollup_max_attempts=2, rollup_retry_base=0.0
    )
    jobs = SchedulerJobs(dataclasses.replace(settings, scheduler=scheduler))
    yield jobs
    jobs.close()


def _finished_job(agent, name: str, points: int = 5) -> str:
    job_id = agent.post("/backups", json={"vm_name": name, "backup_type": "full", "repository_id": "r"}).json()[
        "backup_id"
    ]
    for i in range(1, points):
        assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, total=points)).status_code == 202
    final = agent.post(f"/telemetry/backup/{job_id}", json=update_body(points, total=points, status="completed"))
    assert final.status_code == 200
    return job_id


def _rows(engine, job_ids: list[str]) -> dict:
    with engine.connect() as conn:
        return {
            r.id: r
            for r in conn.execute(
                select(backup_jobs).where(backup_jobs.c.id.in_(bindparam("ids", expanding=True))), {"ids": job_ids}
            )
        }


def _poison(influx, settings, job_id: str) -> None:
    # Another writer put a number where the phase name belongs, 20 days back: in a shard of its own
    # (one per day) where no string phase was ever written, so InfluxDB accepts it; the API itself never
    # writes there (agent timestamps are at most 7 days old). InfluxDB then answers the job's phases with
    # the higher-ranked type, integers, which no chart can be made of.
    stamp = time.time_ns() - 20 * DAY_NS
    influx.write(
        f"job_telemetry,job_id={job_id},job_type=backup current_phase=7i {stamp}",
        rp=settings.influx.raw_rp,
    )


def test_a_poison_job_is_recorded_and_twenty_others_are_rolled_up(
    agent, viewer, influx, engine, settings, strict_scheduler, unique
):
    poison = _finished_job(agent, f"poison-{unique}")
    _poison(influx, settings, poison)
    normal = [_finished_job(agent, f"normal-{unique}-{n}") for n in range(20)]

    first = strict_scheduler.roll_up()
    assert first.failed >= 1 and first.stopped_by is None
    rows = _rows(engine, [poison, *normal])
    assert all(rows[j].rolled_up_at is not None and rows[j].purged_at is not None for j in normal)
    assert all(count_series(influx, j) == 0 for j in normal)
    assert rows[poison].rolled_up_at is None and rows[poison].rollup_attempts == 1
    assert "TypeError" in rows[poison].rollup_last_error
    job = viewer.get(f"/backups/{poison}").json()
    assert job["rollup"]["state"] == "retrying" and job["rollup"]["attempts"] == 1
    assert job["has_performance_metrics"] is False

    # Retried (back-off 0 here), fails again, and is set aside: visible to operators, raw points kept.
    strict_scheduler.roll_up()
    row = _rows(engine, [poison])[poison]
    assert row.rollup_attempts == 2 and row.rollup_failed_at is not None and row.rollup_next_attempt_at is None
    assert count_points(influx, poison) == 5, "raw telemetry is never deleted without a summary"
    job = viewer.get(f"/backups/{poison}").json()
    assert job["rollup"]["state"] == "failed" and "TypeError" in job["rollup"]["last_error"]
    rollup = viewer.get("/health/ready").json()["checks"]["rollup"]
    assert rollup["failed"] >= 1 and poison in [j["job_id"] for j in rollup["recently_failed"]]
    # Set aside for good: further runs leave it alone.
    strict_scheduler.roll_up()
    assert _rows(engine, [poison])[poison].rollup_attempts == 2


def test_a_disk_index_tag_written_by_someone_else_does_not_stop_the_rollup(
    agent, influx, engine, settings, strict_scheduler, unique
):
    job_id = _finished_job(agent, f"odd-disk-{unique}")
    for odd in ("²", "x", "99999999999999999999"):
        influx.write(
            f"job_telemetry,disk_index={odd},job_id={job_id},job_type=backup "
            f"transfer_speed_bps=5i,progress_percent=1.0 {time.time_ns()}",
            rp=settings.influx.raw_rp,
        )
    strict_scheduler.roll_up()
    row = _rows(engine, [job_id])[job_id]
    assert row.rolled_up_at is not None and row.rollup_attempts == 0
    assert row.performance_metrics["snapshots_recorded"] == 5


def test_an_influxdb_outage_is_not_counted_against_a_job(agent, engine, stack, strict_scheduler, unique):
    job_id = _finished_job(agent, f"outage-rollup-{unique}")
    stack.stop_influx()
    try:
        run = strict_scheduler.roll_up()
        assert run.stopped_by and "InfluxDB" in run.stopped_by
    finally:
        stack.start_influx()
    row = _rows(engine, [job_id])[job_id]
    assert row.rollup_attempts == 0 and row.rollup_last_error is None and row.rolled_up_at is None
    strict_scheduler.roll_up()
    assert _rows(engine, [job_id])[job_id].rolled_up_at is not None


def test_a_second_sweep_after_a_purge_does_nothing(agent, influx, settings, strict_scheduler, unique):
    job_id = _finished_job(agent, f"sweep-{unique}")
    strict_scheduler.roll_up()
    assert count_series(influx, job_id) == 0
    # A stray point reaches the purged job's series (a late writer): the sweep finds and drops it.
    influx.write(
        f"job_telemetry,job_id={job_id},job_type=backup transfer_speed_bps=5i {time.time_ns()}",
        rp=settings.influx.raw_rp,
    )
    assert job_id in strict_scheduler.purger.sweep_leftovers()
    assert count_series(influx, job_id) == 0
    # InfluxDB 1.6 still lists the dropped job in SHOW TAG VALUES; the sweep must not act on it again.
    assert strict_scheduler.purger.sweep_leftovers() == []
