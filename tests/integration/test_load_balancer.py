"""Two API processes behind a real nginx: one job's updates spread over both, and a front that holds up."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import OUTPUT_DIR
from tests.support.devstack import DevStack
from tests.support.probes import count_points, update_body

IDLE_CONNECTIONS = 2000
SLOW_CLIENTS = 200


@pytest.fixture(scope="module")
def balanced(stack: DevStack) -> Iterator[tuple[str, list[str]]]:
    """nginx on its own port in front of two API processes; yields (nginx URL, [API URLs])."""
    ports = [stack.api_port + 10, stack.api_port + 11]
    nginx_port = stack.api_port + 12
    procs = []
    try:
        for port in ports:
            procs.append(stack.start_api(port=port, log_path=OUTPUT_DIR / f"api-lb-{port}.log"))
        stack.start_nginx(nginx_port, ports)
        yield f"http://127.0.0.1:{nginx_port}", [f"http://127.0.0.1:{p}" for p in ports]
    finally:
        stack.stop_nginx()
        for proc in procs:
            stack.stop_process(proc)


def _client(base: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _updates_taken(api_url: str) -> int:
    return httpx.get(f"{api_url}/api/v1/health/ready").json()["checks"]["group_commit"]["updates"]


def test_full_flow_through_nginx_with_updates_alternating_between_processes(
    balanced, stack, influx, scheduler_jobs, unique
):
    front, apis = balanced
    before = [_updates_taken(a) for a in apis]
    with _client(front, stack.agent_token) as client:
        created = client.post("/backups", json={"vm_name": f"lb-{unique}", "backup_type": "full", "repository_id": "r"})
        assert created.status_code == 201, created.text
        job_id = created.json()["backup_id"]
        start = datetime.now(UTC) - timedelta(minutes=5)
        for i in range(1, 40):
            stamp = (start + timedelta(seconds=i)).isoformat()
            response = client.post(f"/telemetry/backup/{job_id}", json=update_body(i, total=40, timestamp=stamp))
            assert response.status_code == 202, response.text
        final = update_body(40, total=40, status="completed", timestamp=(start + timedelta(seconds=40)).isoformat())
        assert client.post(f"/telemetry/backup/{job_id}", json=final).status_code == 200
        taken = [_updates_taken(a) - b for a, b in zip(apis, before, strict=True)]
        # nginx spread the job over both processes (least_conn, ties round-robin), and both committed.
        assert sum(taken) == 40 and min(taken) >= 10, taken
        assert client.get(f"/backups/{job_id}").json()["status"] == "completed"
        assert count_points(influx, job_id) == 40
        scheduler_jobs.roll_up()
        history = client.get(f"/telemetry/history/{job_id}").json()
    assert history["data_source"] == "rolled_up"
    assert history["performance_metrics"]["snapshots_recorded"] == 40
    assert history["performance_metrics"]["chart_data"][-1]["phase"] == "completed"


async def _hold_idle(port: int, count: int, stop: asyncio.Event, opened: list[int]) -> None:
    """Keep `count` connections open that never send a byte; reopen those the server closes."""

    async def one() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            opened[0] += 1
            try:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reader.read(1), timeout=60)  # returns when the server closes
            finally:
                writer.close()

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _trickle(port: int, count: int, token: str, stop: asyncio.Event, opened: list[int]) -> None:
    """`count` clients that send a request's headers, then its body at 1 byte per second."""
    head = (
        "POST /api/v1/telemetry/backup/slow-client HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    ).encode()

    async def one() -> None:
        while not stop.is_set():
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            opened[0] += 1
            try:
                writer.write(head)
                while not stop.is_set():
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(1.0)
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_idle_and_slow_clients_do_not_lock_out_a_normal_agent(balanced, stack, influx, unique):
    front, _ = balanced
    port = int(front.rsplit(":", 1)[1])
    counts = {"idle": [0], "slow": [0]}
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def pressure() -> None:
        await asyncio.gather(
            _hold_idle(port, IDLE_CONNECTIONS, stop, counts["idle"]),
            _trickle(port, SLOW_CLIENTS, stack.agent_token, stop, counts["slow"]),
        )

    thread = threading.Thread(target=lambda: loop.run_until_complete(pressure()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while counts["idle"][0] < IDLE_CONNECTIONS or counts["slow"][0] < SLOW_CLIENTS:
            assert time.monotonic() < deadline, f"could not open the pressure connections: {counts}"
            time.sleep(0.1)
        assert _open_connections(port) >= IDLE_CONNECTIONS + SLOW_CLIENTS
        latencies, acknowledged, open_samples = [], 0, []
        with _client(front, stack.agent_token) as client:
            job_id = client.post(
                "/backups", json={"vm_name": f"pressure-{unique}", "backup_type": "full", "repository_id": "r"}
            ).json()["backup_id"]
            start = datetime.now(UTC) - timedelta(minutes=5)
            # About 10 s of steady traffic: longer than nginx's 5 s idle and header timeouts.
            for i in range(1, 401):
                stamp = (start + timedelta(milliseconds=10 * i)).isoformat()
                t = time.perf_counter()
                response = client.post(f"/telemetry/backup/{job_id}", json=update_body(i, timestamp=stamp))
                latencies.append(time.perf_counter() - t)
                assert response.status_code == 202, response.text
                acknowledged += 1
                if i % 50 == 0:
                    open_samples.append(_open_connections(port))
                time.sleep(0.02)
        # nginx drops idle connections after 5 s and the pressure reopens them at once (a reconnect storm,
        # pressure of its own): most samples see every pressure connection open.
        assert statistics.median(open_samples) >= IDLE_CONNECTIONS + SLOW_CLIENTS, open_samples
        assert counts["idle"][0] > IDLE_CONNECTIONS, "nginx never dropped an idle connection"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    assert p99 < 0.1, f"p99 {p99 * 1000:.0f} ms with {IDLE_CONNECTIONS} idle and {SLOW_CLIENTS} slow clients"
    assert count_points(influx, job_id) == acknowledged == 400


def _open_connections(port: int) -> int:
    """Established TCP connections to `port` on loopback, from /proc/net/tcp (the server side)."""
    target = f"{port:04X}"
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[1].endswith(f":{target}") and fields[3] == "01":
                count += 1
    return count
