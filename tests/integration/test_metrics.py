"""Prometheus metrics of the API and the scheduler: parsed, moving with traffic, read back by a real Prometheus."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import OUTPUT_DIR
from tests.support.devstack import PROJECT_DIR, DevStack
from tests.support.probes import update_body, wait_for

SCHEDULER_METRICS_PORT = 19108
PROMETHEUS_PORT = 19090


def _samples(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a /metrics page, parsed by prometheus_client."""
    text = httpx.get(url, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_api_counters_move_with_traffic(agent, api, unique):
    job_id = agent.post("/backups", json={"vm_name": f"metrics-{unique}", "backup_type": "full", "repository_id": "r"})
    job_id = job_id.json()["backup_id"]
    before = _samples(f"{api}/metrics")
    for i in range(1, 4):
        assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(i)).status_code == 202
    assert agent.post(f"/telemetry/backup/{job_id}", json={"bytes_transferred": "x"}).status_code == 400
    assert agent.post(f"/telemetry/backup/no-such-{unique}", json=update_body(1)).status_code == 404
    assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(4, status="completed")).status_code == 200
    assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(5)).status_code == 409
    after = _samples(f"{api}/metrics")

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    # At least: the browser tests' seeded job may be streaming through the same API meanwhile.
    assert moved("sendense_updates_total", outcome="accepted") >= 3
    assert moved("sendense_updates_total", outcome="terminal") == 1
    assert moved("sendense_updates_total", outcome="invalid") == 1
    assert moved("sendense_updates_total", outcome="unknown_job") == 1
    assert moved("sendense_updates_total", outcome="finished") == 1
    assert moved("sendense_ack_seconds_count") >= 4
    assert moved("sendense_influx_write_seconds_count") >= 1 and moved("sendense_mysql_commit_seconds_count") >= 1
    assert ("sendense_commit_queue_updates", ()) in after


WORKERS_PORT = 18095


def test_workers_sharing_a_port_report_the_same_totals(agent, stack: DevStack, unique):
    """`sendense api --workers 2`: whichever worker answers a scrape counts every worker's updates
    (prometheus_client's multi-process mode); without it, each scrape would see one worker's share."""
    proc = stack.start_process(
        "api", "--workers", "2", "--port", str(WORKERS_PORT), log_path=OUTPUT_DIR / "api-workers-metrics.log"
    )
    try:
        stack.wait_for_api(proc, port=WORKERS_PORT)
        url = f"http://127.0.0.1:{WORKERS_PORT}"
        job_id = agent.post(
            "/backups", json={"vm_name": f"workers-{unique}", "backup_type": "full", "repository_id": "r"}
        )
        job_id = job_id.json()["backup_id"]
        headers = {"Authorization": f"Bearer {stack.agent_token}"}
        for i in range(1, 41):  # a connection each: the kernel spreads them over both workers
            answer = httpx.post(f"{url}/api/v1/telemetry/backup/{job_id}", json=update_body(i), headers=headers)
            assert answer.status_code == 202, answer.text
        scrapes = [_value(_samples(f"{url}/metrics"), "sendense_updates_total", outcome="accepted") for _ in range(8)]
        assert scrapes == [40.0] * 8
        # Each worker's own file: both took a share, so one worker's count alone would not be 40.
        files = sorted((PROJECT_DIR / stack.state_dir / f"metrics-api-{WORKERS_PORT}").glob("counter_*.db"))
        shares = [_accepted(MultiProcessCollector.merge([str(f)], accumulate=True)) for f in files]
        assert len(shares) == 2 and all(0 < share < 40 for share in shares), shares
    finally:
        stack.stop_process(proc)


def _accepted(metrics) -> float:
    return sum(
        sample.value
        for metric in metrics
        for sample in metric.samples
        if sample.name == "sendense_updates_total" and sample.labels.get("outcome") == "accepted"
    )


@pytest.fixture(scope="module")
def scheduler(stack: DevStack) -> Iterator[str]:
    env = {
        "SENDENSE_SCHEDULER_METRICS_PORT": str(SCHEDULER_METRICS_PORT),
        "SENDENSE_ROLLUP_INTERVAL": "0.5",
        "SENDENSE_PURGE_INTERVAL": "1",
        "SENDENSE_REAPER_INTERVAL": "1",
    }
    proc = stack.start_process("scheduler", log_path=OUTPUT_DIR / "scheduler-metrics.log", env=env)
    url = f"http://127.0.0.1:{SCHEDULER_METRICS_PORT}/metrics"
    wait_for(lambda: _reachable(url), timeout=30, what="the scheduler's metrics")
    yield url
    stack.stop_process(proc)


def _reachable(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_scheduler_metrics_count_rollups_and_say_when_each_job_last_ran(scheduler, agent, unique):
    before = _value(_samples(scheduler), "sendense_rollups_total", result="rolled_up")
    job_id = agent.post("/backups", json={"vm_name": f"sched-{unique}", "backup_type": "full", "repository_id": "r"})
    job_id = job_id.json()["backup_id"]
    assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(1, status="completed")).status_code == 200
    wait_for(
        lambda: _value(_samples(scheduler), "sendense_rollups_total", result="rolled_up") > before,
        timeout=30,
        what="the scheduler to count a rollup",
    )
    samples = _samples(scheduler)
    for job in ("rollup", "purge", "reaper"):
        assert _value(samples, "sendense_scheduler_last_run_age_seconds", job=job) < 10, job
    assert _value(samples, "sendense_rollup_seconds_count") >= 1
    assert ("sendense_jobs_waiting_rollup", ()) in samples and ("sendense_purge_backlog", ()) in samples


def test_a_real_prometheus_scrapes_the_documented_targets(scheduler, api, agent, tmp_path: Path):
    config = yaml.safe_load((PROJECT_DIR / "infra/prometheus/prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    targets = {"sendense-api": api.removeprefix("http://"), "sendense-scheduler": f"127.0.0.1:{SCHEDULER_METRICS_PORT}"}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(OUTPUT_DIR / "prometheus.log", "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def value(query: str) -> float | None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query", params={"query": query}).json()
            except (httpx.HTTPError, ValueError):
                return None
            result = answer.get("data", {}).get("result", [])
            return float(result[0]["value"][1]) if result else None

        accepted = wait_for(
            lambda: value('sum(sendense_updates_total{outcome="accepted",job="sendense-api"})'),
            timeout=60,
            what="Prometheus to scrape the API",
        )
        assert accepted >= 1
        assert wait_for(
            lambda: value('up{job="sendense-scheduler"}') == 1.0, timeout=60, what="Prometheus to scrape the scheduler"
        )
    finally:
        DevStack.stop_process(proc, timeout=10)
        log.close()
