"""Incremental live history: `?since=<cursor>` gives only the new points, which appended to the earlier
answer give the whole chart; readers of one refresh share one InfluxDB read, whatever the job's length."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from pipeline.ingest.registry import JobEntry
from pipeline.read.history import TelemetryHistory
from pipeline.read.live import LIVE_CHART_POINTS, LiveCharts
from pipeline.tsdb.encoding import telemetry_line
from pipeline.tsdb.influx import AsyncInflux
from tests.support.probes import send_batch, update_body

START = datetime.now(UTC) - timedelta(hours=6)


def _create(agent, vm: str) -> str:
    body = {"vm_name": vm, "backup_type": "incremental", "repository_id": "repo-live"}
    return agent.post("/backups", json=body).json()["backup_id"]


def _send(agent, job_id: str, updates: range, **extra) -> None:
    for i in updates:
        body = update_body(i, total=2000, timestamp=(START + timedelta(seconds=10 * i)).isoformat(), **extra)
        assert agent.post(f"/telemetry/backup/{job_id}", json=body).status_code in (200, 202)


def test_since_gives_the_new_points_that_complete_the_chart(agent, viewer, unique):
    job_id = _create(agent, f"live-{unique}")
    _send(agent, job_id, range(1, 6))
    first = viewer.get(f"/telemetry/history/{job_id}").json()
    assert first["data_source"] == "live_snapshots" and len(first["chart_data"]) == 5 and "since" not in first

    _send(agent, job_id, range(6, 9))
    new = viewer.get(f"/telemetry/history/{job_id}", params={"since": first["cursor"]}).json()
    assert new["since"] == first["cursor"] and new["cursor"] != first["cursor"]
    assert [p["t"] for p in new["chart_data"]] == [50, 60, 70]  # seconds from the first point, as in the whole
    whole = viewer.get(f"/telemetry/history/{job_id}").json()
    assert first["chart_data"] + new["chart_data"] == whole["chart_data"]
    assert new["current_state"] == whole["current_state"] and new["current_state"]["bytes_transferred"] == 80
    assert new["eta_reason"] == whole["eta_reason"] and new["eta_seconds"] == whole["eta_seconds"]

    # Nothing new: nothing to append.
    again = viewer.get(f"/telemetry/history/{job_id}", params={"since": new["cursor"]}).json()
    assert again["chart_data"] == [] and again["cursor"] == new["cursor"]

    # Finished: the whole summary, whatever `since` says.
    _send(agent, job_id, range(9, 10), status="completed")
    final = viewer.get(f"/telemetry/history/{job_id}", params={"since": new["cursor"]}).json()
    assert final["data_source"] == "rolled_up" and "since" not in final


def test_a_bad_cursor_is_refused(viewer, agent, unique):
    job_id = _create(agent, f"live-bad-{unique}")
    for bad in ("abc", "-1", "1" * 20, "1.5"):
        assert viewer.get(f"/telemetry/history/{job_id}", params={"since": bad}).status_code == 400, bad


def _long_job(influx, settings, agent, vm: str, points: int) -> str:
    """A running job whose first update is stamped START, with `points` more written straight to InfluxDB."""
    job_id = _create(agent, vm)
    _send(agent, job_id, range(0, 1))
    key = JobEntry(job_id, "backup", vm, "repo-live", "running").key(None)
    start_ns = int(START.timestamp()) * 10**9
    lines = [
        telemetry_line(
            key,
            bytes_transferred=i,
            total_bytes=points,
            transfer_speed_bps=1000 + i % 50,
            progress_percent=min(99.0, 100.0 * i / points),
            current_phase="transferring",
            worker_count=1,
            timestamp_ns=start_ns + i * 10**9 // 2,
        )
        for i in range(1, points + 1)
    ]
    for at in range(0, len(lines), 10_000):
        influx.write("\n".join(lines[at : at + 10_000]), rp=settings.influx.raw_rp)
    return job_id


def test_readers_of_one_refresh_share_one_read_and_only_new_points_are_read(agent, influx, settings, engine, unique):
    vm = f"live-shared-{unique}"
    job_id = _long_job(influx, settings, agent, vm, 20_000)  # bucketed: longer than a chart
    # An update after the points written straight to InfluxDB (10,000 s of them).
    _send(agent, job_id, range(1001, 1002))

    async def scenario() -> None:
        client = AsyncInflux(settings.influx)
        history = TelemetryHistory(engine, client, settings.influx.raw_rp)
        try:
            first = await history.get(job_id)
            assert history.live.reads == {"full": 1, "tail": 0, "shared": 0}
            assert len(first["chart_data"]) <= LIVE_CHART_POINTS
            # Eight viewers refresh at once after one more update: one read of the new points, shared.
            _send(agent, job_id, range(1002, 1004))
            answers = await asyncio.gather(*(history.get(job_id, int(first["cursor"])) for _ in range(8)))
            assert history.live.reads == {"full": 1, "tail": 1, "shared": 7}
            assert all(a["chart_data"] == answers[0]["chart_data"] for a in answers)
            assert [p["t"] for p in answers[0]["chart_data"]] == [10_020, 10_030]
            # Nothing new: no read at all.
            await history.get(job_id, int(answers[0]["cursor"]))
            assert history.live.reads["tail"] == 1 and history.live.reads["full"] == 1
            # The ETA was estimated once for the eight, and is what an estimate over the same chart gives now.
            held = await history.live.get(job_id, 0, None)
            assert held.estimate is not None and held.estimate[0][0] == len(held.points)
            held.estimate = None
            fresh = await history.get(job_id)
            assert len(fresh["chart_data"]) == len(first["chart_data"]) + 2
            assert {a["eta_reason"] for a in answers} == {fresh["eta_reason"]}
            if fresh["eta_seconds"] is not None:
                assert all(abs(a["eta_seconds"] - fresh["eta_seconds"]) < 1.0 for a in answers)
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_chart_grown_past_its_bound_is_read_whole_again(agent, influx, settings, engine, unique):
    job_id = _create(agent, f"live-grow-{unique}")
    _send(agent, job_id, range(1, 3))

    async def scenario() -> None:
        client = AsyncInflux(settings.influx)
        charts = LiveCharts(client, TelemetryHistory(engine, client, settings.influx.raw_rp).source)
        try:
            start_ns = int(START.timestamp() * 1e9)
            chart = await charts.get(job_id, start_ns, None)
            assert len(chart.points) == 2
            points = LIVE_CHART_MAX_PLUS
            send_batch(agent, job_id, range(3, 3 + points), START, every_s=10, total=2000)
            grown = await charts.get(job_id, start_ns, 2**62)
            assert charts.reads["full"] == 2 and len(grown.points) <= LIVE_CHART_POINTS
            # A cursor from before the re-read was given for other points: its reader takes the whole chart.
            assert grown.after(int(chart.cursor)) is None
            assert grown.after(int(grown.cursor)) == []
        finally:
            await client.aclose()

    asyncio.run(scenario())


LIVE_CHART_MAX_PLUS = 2 * LIVE_CHART_POINTS + 10
