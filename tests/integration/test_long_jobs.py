"""Long jobs stay bounded: a 100,000-point rollup and an aggregated live chart."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from pipeline.ingest.registry import JobEntry
from pipeline.tsdb.encoding import telemetry_line
from tests.support.probes import update_body

START_NS = (int(time.time()) - 6 * 3600) * 10**9


def _write_points(influx, settings, entry: JobEntry, count: int, step_ns: int, speed, start_ns: int = START_NS) -> None:
    key = entry.key(None)
    lines = [
        telemetry_line(
            key,
            bytes_transferred=i * 1000,
            total_bytes=count * 1000,
            transfer_speed_bps=speed(i),
            progress_percent=100.0 * i / count,
            current_phase="snapshot" if i < count // 20 else "transferring",
            worker_count=4,
            timestamp_ns=start_ns + i * step_ns,
        )
        for i in range(count)
    ]
    for start in range(0, count, 10_000):
        influx.write("\n".join(lines[start : start + 10_000]), rp=settings.influx.raw_rp)


def _running_job(agent, name: str, start_ns: int = START_NS) -> JobEntry:
    """A running job whose first update is stamped `start_ns`: the points written below lie in its window."""
    created = agent.post("/backups", json={"vm_name": name, "backup_type": "full", "repository_id": "repo-long"})
    job_id = created.json()["backup_id"]
    first = update_body(0, timestamp=datetime.fromtimestamp(start_ns / 1e9 - 1, UTC).isoformat())
    assert agent.post(f"/telemetry/backup/{job_id}", json=first).status_code == 202
    return JobEntry(job_id, "backup", name, "repo-long", "running")


def _speed(i: int) -> int:
    if i == 77_777:
        return 999_000_000  # the one peak
    if i == 55_555:
        return 7  # the one minimum non-zero
    return 0 if i % 1000 == 0 else 100_000_000 + (i % 97) * 1_000_000


def test_rollup_of_100k_points_keeps_peak_and_minimum_in_a_bounded_chart(
    agent, influx, settings, scheduler_jobs, unique
):
    entry = _running_job(agent, f"long-{unique}")
    _write_points(influx, settings, entry, 100_000, 200_000_000, _speed)
    final = agent.post(f"/telemetry/backup/{entry.job_id}", json=update_body(1000, total=1000, status="completed"))
    assert final.status_code == 200

    scheduler_jobs.roll_up()
    history = agent.get(f"/telemetry/history/{entry.job_id}").json()
    assert history["data_source"] == "rolled_up"
    metrics = history["performance_metrics"]
    assert metrics["snapshots_recorded"] == 100_002
    assert len(json.dumps(metrics, separators=(",", ":"))) < 8000
    chart = metrics["chart_data"]
    assert 4 <= len(chart) <= settings.scheduler.chart_max_points
    speeds = [p["s"] for p in chart]
    assert metrics["peak_speed_bps"] == 999_000_000 and 999_000_000 in speeds
    assert metrics["min_speed_bps"] == 7 and 7 in speeds
    assert chart[0]["t"] == 0 and chart[-1]["phase"] == "completed"
    assert metrics["phase_durations"]["snapshot"] > 0


def test_live_chart_of_a_long_running_job_is_aggregated_by_influxdb(agent, influx, settings, unique):
    # 17,280 points: a day at one point every 5 s (the live-history case), ending an hour ago.
    start_ns = (int(time.time()) - 25 * 3600) * 10**9
    entry = _running_job(agent, f"live-long-{unique}", start_ns)
    _write_points(influx, settings, entry, 17_280, 5 * 10**9, lambda i: 50_000_000 + i, start_ns)
    history = agent.get(f"/telemetry/history/{entry.job_id}").json()
    assert history["data_source"] == "live_snapshots"
    chart = history["chart_data"]
    assert 100 < len(chart) <= 600
    assert chart[0]["t"] == 0
    assert all(a["t"] < b["t"] for a, b in zip(chart, chart[1:], strict=False))
    assert {p["phase"] for p in chart} <= {"snapshot", "transferring"}
