"""InfluxDB with authentication on: Grafana's user only reads; the pipeline works with its write user."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.settings import InfluxSettings
from pipeline.tsdb.influx import InfluxError, SyncInflux
from pipeline.tsdb.schema import ensure_influx_schema
from tests.conftest import OUTPUT_DIR
from tests.integration.test_grafana_dashboard import DASHBOARD, MIN_INTERVAL
from tests.support.devstack import PROJECT_DIR, DevStack
from tests.support.grafana import (
    ALL,
    TimeRange,
    metric_find_values,
    panel_queries,
    render_panel_query,
    render_variable_query,
    template_variables,
)
from tests.support.probes import update_body

AUTH_PORT = 18096


@pytest.fixture(scope="module")
def secured(stack: DevStack) -> Iterator[dict[str, str]]:
    """A second InfluxDB, authentication on (loopback, forced), provisioned by infra/influxdb.sh."""
    state = Path(stack.state_dir) / "influxdb-auth"
    env = {
        **os.environ,
        "SENDENSE_STATE_DIR": str(state),
        "SENDENSE_INFLUX_PORT": str(AUTH_PORT),
        "SENDENSE_INFLUX_AUTH": "on",
    }
    script = str(PROJECT_DIR / "infra" / "influxdb.sh")
    subprocess.run(["bash", script, "start"], env=env, check=True)
    users = dict(
        line.split("=", 1) for line in (state / "influxdb" / "users.env").read_text().splitlines() if "=" in line
    )
    yield users
    subprocess.run(["bash", script, "stop"], env=env, check=True)


def _settings(user: str, password: str, **extra) -> InfluxSettings:
    return InfluxSettings(url=f"http://127.0.0.1:{AUTH_PORT}", username=user, password=password, **extra)


def test_without_credentials_nothing_is_allowed(secured):
    client = SyncInflux(_settings("", ""))
    with pytest.raises(InfluxError, match="401|unable to parse authentication credentials|authorization"):
        client.query("SHOW DATABASES", db=False)
    client.close()


def test_grafanas_user_runs_every_dashboard_query_and_may_not_change_anything(secured):
    admin = _settings("admin", secured["INFLUX_ADMIN_PASSWORD"])
    ensure_influx_schema(admin)
    writer = SyncInflux(_settings("sendense_writer", secured["INFLUX_WRITER_PASSWORD"]))
    writer.write('job_telemetry,job_id=auth-1,vm_name=vm,repository_id=r,job_type=backup transfer_speed_bps=5i,'
                 'progress_percent=1.0,current_phase="transferring"', rp="raw_telemetry")  # fmt: skip
    grafana = SyncInflux(_settings("grafana", secured["INFLUX_GRAFANA_PASSWORD"]))
    time_range = TimeRange("now-6h", "now", 0)
    variables = template_variables(DASHBOARD)
    for name, variable in list(variables.items()):
        if variable.type == "query":
            query = render_variable_query(variable, variables, time_range, mode="backend")
            variables[name] = variable.select(ALL, metric_find_values(query, grafana.query(query)))
    ran = 0
    for panel in panel_queries(DASHBOARD):
        rendered = render_panel_query(panel, variables, time_range, datasource_min_interval=MIN_INTERVAL)
        grafana.query(rendered)  # raises InfluxError if the user may not read it
        ran += 1
    assert ran >= 9
    refusals = [
        lambda: grafana.write("job_telemetry,job_id=x transfer_speed_bps=1i", rp="raw_telemetry"),
        lambda: grafana.query("DROP SERIES FROM job_telemetry WHERE job_id = 'auth-1'"),
        lambda: grafana.query("DROP MEASUREMENT job_telemetry"),
        lambda: grafana.query("CREATE DATABASE stolen", db=False),
    ]
    for attempt in refusals:
        with pytest.raises(InfluxError, match="(?i)not authorized|forbidden|403|requires admin"):
            attempt()
    assert grafana.query("SELECT count(transfer_speed_bps) FROM job_telemetry")[0]["series"]
    writer.close()
    grafana.close()


def test_the_pipeline_works_end_to_end_with_its_write_user(secured, stack: DevStack, engine, unique):
    """API and rollup against the secured InfluxDB as sendense_writer: write, read, DROP SERIES."""
    import httpx

    from pipeline.scheduler import SchedulerJobs
    from pipeline.settings import load_settings

    env = {
        "SENDENSE_INFLUX_URL": f"http://127.0.0.1:{AUTH_PORT}",
        "SENDENSE_INFLUX_USER": "sendense_writer",
        "SENDENSE_INFLUX_PASSWORD": secured["INFLUX_WRITER_PASSWORD"],
    }
    port = stack.api_port + 30
    proc = stack.start_api(port=port, log_path=OUTPUT_DIR / "api-influx-auth.log", env=env)
    try:
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/api/v1", headers={"Authorization": f"Bearer {stack.agent_token}"}
        )
        job_id = client.post("/backups", json={"vm_name": f"auth-{unique}", "backup_type": "full",
                                               "repository_id": "r"}).json()["backup_id"]  # fmt: skip
        for i in range(1, 5):
            assert client.post(f"/telemetry/backup/{job_id}", json=update_body(i)).status_code == 202
        assert client.post(f"/telemetry/backup/{job_id}", json=update_body(5, status="completed")).status_code == 200
        settings = load_settings()
        writer = _settings("sendense_writer", secured["INFLUX_WRITER_PASSWORD"])
        scheduler = SchedulerJobs(dataclasses.replace(settings, influx=writer))
        scheduler.roll_up()
        scheduler.close()
        history = client.get(f"/telemetry/history/{job_id}").json()
        assert history["data_source"] == "rolled_up" and history["performance_metrics"]["snapshots_recorded"] == 5
        reader = SyncInflux(writer)
        left = reader.query("SHOW SERIES FROM job_telemetry WHERE job_id = $j", {"j": job_id})
        assert not left[0].get("series"), "DROP SERIES ran as the write user"
        reader.close()
        client.close()
    finally:
        stack.stop_process(proc)
