"""Incremental per-disk curves: `GET /telemetry/history/{id}/disks?since=<cursor>` gives each disk only its
new points, which appended to the earlier answer give the whole curves; the API reads only the disks
whose rows say they have new points, and readers of one refresh share that read."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from pipeline.read.history import TelemetryHistory
from pipeline.read.live_disks import LIVE_DISK_MAX, parse_cursor
from pipeline.tsdb.influx import AsyncInflux
from tests.support.probes import send_batch, update_body

START = datetime.now(UTC) - timedelta(hours=1)


def _create(agent, vm: str, disks: int = 3) -> str:
    body = {"vm_name": vm, "backup_type": "full", "repository_id": "repo-disks"}
    body["disks"] = [{"disk_index": d, "size_bytes": 10_000} for d in range(disks)]
    return agent.post("/backups", json=body).json()["backup_id"]


def _send(agent, job_id: str, disk: int | None, steps: range, speed: int = 1_000_000) -> None:
    for i in steps:
        extra = {} if disk is None else {"disk_index": disk}
        body = update_body(i, total=5000, timestamp=(START + timedelta(seconds=10 * i)).isoformat(), **extra)
        body["transfer_speed_bps"] = speed + i
        response = agent.post(f"/telemetry/backup/{job_id}", json=body)
        assert response.status_code in (200, 202), response.text


def _appended(earlier: dict, new: dict) -> dict[int, list[dict]]:
    """What a dashboard holds after appending `new` (a since-answer) to `earlier`."""
    curves = {d["disk_index"]: list(d["chart_data"]) for d in earlier["disks"]}
    for disk in new["disks"]:
        curves.setdefault(disk["disk_index"], []).extend(disk["chart_data"])
    return curves


def _whole(answer: dict) -> dict[int, list[dict]]:
    return {d["disk_index"]: d["chart_data"] for d in answer["disks"]}


def test_since_gives_each_disk_its_new_points_that_complete_the_curves(agent, viewer, scheduler_jobs, unique):
    job_id = _create(agent, f"disks-live-{unique}")
    _send(agent, job_id, None, range(1, 3))
    _send(agent, job_id, 0, range(1, 6), speed=1_000_000)
    _send(agent, job_id, 1, range(1, 3), speed=3_000_000)  # disk 1 lags behind disk 0
    first = viewer.get(f"/telemetry/history/{job_id}/disks").json()
    assert first["data_source"] == "live_snapshots" and "since" not in first
    assert [d["disk_index"] for d in first["disks"]] == [0, 1]
    assert sorted(parse_cursor(first["cursor"])) == [0, 1]

    # Disk 0 goes on, disk 1 sends points older than disk 0's last, disk 2 starts.
    _send(agent, job_id, 0, range(6, 9), speed=1_000_000)
    _send(agent, job_id, 1, range(3, 5), speed=3_000_000)
    _send(agent, job_id, 2, range(7, 9), speed=5_000_000)
    new = viewer.get(f"/telemetry/history/{job_id}/disks", params={"since": first["cursor"]}).json()
    assert new["since"] == first["cursor"] and new["cursor"] != first["cursor"]
    by_disk = _whole(new)
    assert [p["s"] for p in by_disk[0]] == [1_000_006, 1_000_007, 1_000_008]
    assert [p["s"] for p in by_disk[1]] == [3_000_003, 3_000_004]  # older than disk 0's last, still new
    assert [p["s"] for p in by_disk[2]] == [5_000_007, 5_000_008]  # a disk seen for the first time: whole
    assert [p["t"] for p in by_disk[0]] == [50, 60, 70]  # seconds from the job's first update, as in the whole
    whole = viewer.get(f"/telemetry/history/{job_id}/disks").json()
    assert _appended(first, new) == _whole(whole) and "since" not in whole
    assert whole["cursor"] == new["cursor"]

    # Nothing new: every disk empty, the same cursor.
    again = viewer.get(f"/telemetry/history/{job_id}/disks", params={"since": new["cursor"]}).json()
    assert all(d["chart_data"] == [] for d in again["disks"]) and again["cursor"] == new["cursor"]

    # Finished and rolled up: the kept curves, whole, whatever `since` says.
    _send(agent, job_id, None, range(9, 10))
    final = update_body(10, total=10, status="completed", timestamp=(START + timedelta(seconds=100)).isoformat())
    assert agent.post(f"/telemetry/backup/{job_id}", json=final).status_code == 200
    scheduler_jobs.roll_up()
    kept = viewer.get(f"/telemetry/history/{job_id}/disks", params={"since": new["cursor"]}).json()
    assert kept["data_source"] == "rolled_up" and "since" not in kept and "cursor" not in kept
    assert [d["disk_index"] for d in kept["disks"]] == [0, 1, 2]


def test_a_bad_disk_cursor_is_refused(viewer, agent, unique):
    job_id = _create(agent, f"disks-bad-{unique}")
    many = ",".join(f"{d}:1" for d in range(33))
    for bad in ("abc", "0", "0:", ":5", "-1:5", "0:1;1:2", "0:1.5", "0:" + "1" * 20, "1234:5", many):
        response = viewer.get(f"/telemetry/history/{job_id}/disks", params={"since": bad})
        assert response.status_code == 400, bad
    assert viewer.get(f"/telemetry/history/{job_id}/disks", params={"since": "0:5,3:7"}).status_code == 200
    # A disk named twice keeps its earlier time: points may repeat, none is left out.
    assert parse_cursor("3:7,0:9,0:5") == {3: 7, 0: 5}
    twice = viewer.get(f"/telemetry/history/{job_id}/disks", params={"since": "0:9,0:5"})
    assert twice.status_code == 200, twice.text


def test_only_disks_with_new_points_are_read_and_readers_share_the_read(agent, settings, engine, unique):
    job_id = _create(agent, f"disks-shared-{unique}", disks=4)
    _send(agent, job_id, None, range(1, 2))
    for disk in range(4):
        _send(agent, job_id, disk, range(1, 4))

    async def scenario() -> None:
        client = AsyncInflux(settings.influx)
        history = TelemetryHistory(engine, client, settings.influx.raw_rp)
        try:
            first = await history.disks(job_id)
            assert history.live_disks.reads == {"full": 1, "tail": 0, "shared": 0, "disks": 0}
            # Only disk 2 reports: eight viewers at once, one tail read of one disk, shared by the rest.
            _send(agent, job_id, 2, range(4, 6))
            since = parse_cursor(first["cursor"])
            answers = await asyncio.gather(*(history.disks(job_id, since) for _ in range(8)))
            assert history.live_disks.reads == {"full": 1, "tail": 1, "shared": 7, "disks": 1}
            assert all(a["disks"] == answers[0]["disks"] for a in answers)
            assert {d["disk_index"]: len(d["chart_data"]) for d in answers[0]["disks"]} == {0: 0, 1: 0, 2: 2, 3: 0}
            # Nothing new: no read at all.
            await history.disks(job_id, parse_cursor(answers[0]["cursor"]))
            assert history.live_disks.reads["tail"] == 1 and history.live_disks.reads["full"] == 1

            # A disk growing past its bound: the curves are read whole again, in buckets.
            send_batch(agent, job_id, range(100, 110 + LIVE_DISK_MAX), START, every_s=1, total=5000, disk_index=3)
            grown = await history.disks(job_id, parse_cursor(answers[0]["cursor"]))
            assert history.live_disks.reads["full"] == 2
            assert all(len(d["chart_data"]) <= LIVE_DISK_MAX for d in grown["disks"])
            # The cursor was from before the re-read: the answer is whole (no `since`), every disk's curve.
            assert "since" not in grown and all(d["chart_data"] for d in grown["disks"])
            follow = await history.disks(job_id, parse_cursor(grown["cursor"]))
            assert follow["since"] == grown["cursor"] and all(not d["chart_data"] for d in follow["disks"])
        finally:
            await client.aclose()

    asyncio.run(scenario())
