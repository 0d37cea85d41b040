"""One bad job never stops the others: failures are recorded, retried with back-off, then set aside."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, select

from pipeline.db.tables import backup_jobs
from pipeline.ingest.registry import JobEntry
from pipeline.scheduler import SchedulerJobs
from pipeline.tsdb.encoding import telemetry_line
from pipeline.tsdb.influx import SyncInflux, quote_ident
from pipeline.tsdb.schema import ensure_influx_schema
from tests.support.probes import count_points, count_series, update_body


def _strict(settings, influx_settings=None) -> SchedulerJobs:
    """A scheduler that retries a failed rollup at once and gives up after two attempts."""
    scheduler = dataclasses.replace(
        settings.scheduler, rollup_batch=1_000_000, rollup_max_attempts=2, rollup_retry_base=0.0
    )
    return SchedulerJobs(dataclasses.replace(settings, scheduler=scheduler, influx=influx_settings or settings.influx))


@pytest.fixture
def strict_scheduler(settings):
    jobs = _strict(settings)
    yield jobs
    jobs.close()


@pytest.fixture
def fresh_influx(settings, influx, unique):
    """A database of its own: the poison below needs shards that no earlier test run has typed."""
    isolated = dataclasses.replace(settings.influx, database=f"sendense_poison_{unique}")
    ensure_influx_schema(isolated)
    yield isolated
    influx.query(f"DROP DATABASE {quote_ident(isolated.database)}", db=False)


def _finished_job(agent, name: str, points: int = 5, *, first_stamp: datetime | None = None) -> str:
    """A completed job whose window (its first update to its last) began at `first_stamp` (2 minutes ago)."""
    body = {"vm_name": name, "backup_type": "full", "repository_id": "r"}
    job_id = agent.post("/backups", json=body).json()["backup_id"]
    first_stamp = first_stamp or datetime.now(UTC) - timedelta(minutes=2)
    first = update_body(0, total=points, timestamp=first_stamp.isoformat())
    assert agent.post(f"/telemetry/backup/{job_id}", json=first).status_code == 202
    for i in range(1, points):
        assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, total=points)).status_code == 202
    final = agent.post(f"/telemetry/backup/{job_id}", json=update_body(points, total=points, status="completed"))
    assert final.status_code == 200
    return job_id


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def _rows(engine, job_ids: list[str]) -> dict:
    with engine.connect() as conn:
        return {
            r.id: r
            for r in conn.execute(
                select(backup_jobs).where(backup_jobs.c.id.in_(bindparam("ids", expanding=True))), {"ids": job_ids}
            )
        }


def _write_points(client: SyncInflux, settings, job_id: str, vm_name: str, count: int) -> None:
    """A job's telemetry as an agent writing straight to the (isolated) database would send it."""
    entry = JobEntry(job_id, "backup", vm_name, "r", "running")
    now = time.time_ns()
    lines = [
        telemetry_line(
            entry.key(None),
            bytes_transferred=i,
            total_bytes=count,
            transfer_speed_bps=1000 + i,
            progress_percent=100.0 * i / count,
            current_phase="transferring",
            worker_count=None,
            timestamp_ns=now - 100 * 10**9 + i * 10**9,  # inside the job's window (see _finished_job)
        )
        for i in range(1, count + 1)
    ]
    client.write("\n".join(lines), rp=settings.raw_rp)


def test_a_poison_job_is_recorded_and_twenty_others_are_rolled_up(
    agent, viewer, engine, settings, fresh_influx, unique
):
    client = SyncInflux(fresh_influx)
    two_days_ago = datetime.now(UTC) - timedelta(days=2, hours=1)
    # The poison job started two days ago: its window spans that day's shard and today's.
    poison = _finished_job(agent, f"poison-{unique}", first_stamp=two_days_ago)
    _write_points(client, fresh_influx, poison, f"poison-{unique}", 5)
    # Another writer put a number where the phase name belongs, in the shard of two days ago (where no
    # string phase was written, so InfluxDB accepts it). Across the job's window InfluxDB now answers
    # its phases with the higher-ranked type, integers, which no chart can be made of.
    client.write(
        f"job_telemetry,job_id={poison},job_type=backup current_phase=7i {_ns(two_days_ago + timedelta(minutes=1))}",
        rp=fresh_influx.raw_rp,
    )
    normal = [_finished_job(agent, f"normal-{unique}-{n}") for n in range(20)]
    for n, job_id in enumerate(normal):
        _write_points(client, fresh_influx, job_id, f"normal-{unique}-{n}", 5)
    scheduler = _strict(settings, fresh_influx)
    try:
        _poison_is_isolated(scheduler, client, viewer, engine, poison, normal)
    finally:
        scheduler.close()
        client.close()


def _poison_is_isolated(scheduler, client, viewer, engine, poison: str, normal: list[str]) -> None:
    first = scheduler.roll_up()
    assert first.failed >= 1 and first.stopped_by is None
    rows = _rows(engine, [poison, *normal])
    assert all(rows[j].rolled_up_at is not None and rows[j].purged_at is not None for j in normal)
    assert all(rows[j].performance_metrics["snapshots_recorded"] == 5 for j in normal)
    assert all(count_series(client, j) == 0 for j in normal)
    assert rows[poison].rolled_up_at is None and rows[poison].rollup_attempts == 1
    assert "TypeError" in rows[poison].rollup_last_error
    job = viewer.get(f"/backups/{poison}").json()
    assert job["rollup"]["state"] == "retrying" and job["rollup"]["attempts"] == 1
    assert job["has_performance_metrics"] is False

    # Retried (back-off 0 here), fails again, and is set aside: visible to operators, raw points kept.
    scheduler.roll_up()
    row = _rows(engine, [poison])[poison]
    assert row.rollup_attempts == 2 and row.rollup_failed_at is not None and row.rollup_next_attempt_at is None
    assert count_points(client, poison) == 5, "raw telemetry is never deleted without a summary"
    job = viewer.get(f"/backups/{poison}").json()
    assert job["rollup"]["state"] == "failed" and "TypeError" in job["rollup"]["last_error"]
    rollup = viewer.get("/health/ready").json()["checks"]["rollup"]
    assert rollup["failed"] >= 1 and poison in [j["job_id"] for j in rollup["recently_failed"]]
    # Set aside for good: further runs leave it alone.
    scheduler.roll_up()
    assert _rows(engine, [poison])[poison].rollup_attempts == 2


def test_points_of_another_day_with_another_field_type_do_not_reach_a_job(
    agent, engine, settings, fresh_influx, unique
):
    # The same int phase, but outside the job's window: reads are bounded by the window, so it is unseen.
    client = SyncInflux(fresh_influx)
    job_id = _finished_job(agent, f"windowed-{unique}")
    _write_points(client, fresh_influx, job_id, f"windowed-{unique}", 5)
    stamp = _ns(datetime.now(UTC) - timedelta(days=2))
    client.write(f"job_telemetry,job_id={job_id},job_type=backup current_phase=7i {stamp}", rp=fresh_influx.raw_rp)
    scheduler = _strict(settings, fresh_influx)
    try:
        scheduler.roll_up()
    finally:
        scheduler.close()
        client.close()
    row = _rows(engine, [job_id])[job_id]
    assert row.rolled_up_at is not None and row.rollup_attempts == 0
    assert [p["phase"] for p in row.performance_metrics["chart_data"]] == ["transferring"] * 5


def test_a_disk_index_tag_written_by_someone_else_does_not_stop_the_rollup(
    agent, influx, engine, settings, strict_scheduler, unique
):
    job_id = _finished_job(agent, f"odd-disk-{unique}")
    for odd in ("²", "x", "99999999999999999999"):
        influx.write(
            f"job_telemetry,disk_index={odd},job_id={job_id},job_type=backup "
            f"transfer_speed_bps=5i,progress_percent=1.0 {time.time_ns() - 10**9}",
            rp=settings.influx.raw_rp,
        )
    strict_scheduler.roll_up()
    row = _rows(engine, [job_id])[job_id]
    assert row.rolled_up_at is not None and row.rollup_attempts == 0
    assert row.performance_metrics["snapshots_recorded"] == 6


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
