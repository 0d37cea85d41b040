"""The dashboard's alerts panels (MySQL), their SQL rendered as Grafana renders it, against alerts the real
evaluator made from jobs sent through the real API, read as a user that may only SELECT the alerts table."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pymysql
import pytest
import yaml
from sqlalchemy import text

from pipeline.alerts.evaluator import AlertEvaluator
from pipeline.alerts.heartbeats import HeartbeatStore
from pipeline.alerts.store import AlertStore
from tests.support.devstack import PROJECT_DIR
from tests.support.grafana import TimeRange, load_dashboard
from tests.support.grafana_sql import render_mysql_query, sql_panel_queries
from tests.support.probes import update_body

DASHBOARD = load_dashboard(PROJECT_DIR / "infra/grafana/dashboards/backup-telemetry.json")
PANELS = {q.title: q for q in sql_panel_queries(DASHBOARD)}
DATASOURCE = yaml.safe_load((PROJECT_DIR / "infra/grafana/provisioning/datasources/sendense-mysql.yaml").read_text())
SESSION_ZONE = DATASOURCE["datasources"][0]["jsonData"]["timezone"]
DOC = (PROJECT_DIR / "docs/grafana.md").read_text(encoding="utf-8")


def _job(agent, vm: str, status: str, start: datetime) -> str:
    created = agent.post("/backups", json={"vm_name": vm, "backup_type": "full", "repository_id": "repo-grafana"})
    assert created.status_code == 201, created.text
    job_id = created.json()["backup_id"]
    for i in range(3):
        body = update_body(i, total=3, timestamp=(start + timedelta(seconds=10 * i)).isoformat())
        assert agent.post(f"/telemetry/backup/{job_id}", json=body).status_code == 202
    final = update_body(3, total=3, status=status, timestamp=(start + timedelta(seconds=30)).isoformat())
    assert agent.post(f"/telemetry/backup/{job_id}", json=final).status_code == 200
    return job_id


@pytest.fixture(scope="module")
def fleet(api, stack, engine, settings):
    """Three machines: one failing (critical, firing), one past its RPO (warning, firing), one whose
    failure a later success resolved."""
    import httpx

    u = re.sub(r"\W", "", datetime.now(UTC).isoformat())[-10:]
    vms = {"failing": f"grafana failing {u}", "late": f"grafana late {u}", "fixed": f"grafana fixed {u}"}
    now = datetime.now(UTC)
    with httpx.Client(base_url=f"{api}/api/v1", headers={"Authorization": f"Bearer {stack.agent_token}"}) as agent:
        _job(agent, vms["failing"], "failed", now - timedelta(minutes=5))
        _job(agent, vms["late"], "completed", now - timedelta(hours=30))
        _job(agent, vms["fixed"], "failed", now - timedelta(minutes=20))
        alert_settings = dataclasses.replace(settings.alerts, hold_down=0.0)
        evaluator = AlertEvaluator(AlertStore(engine), HeartbeatStore(engine), alert_settings, settings.api.rpo_default)
        evaluator.run_once()
        _job(agent, vms["fixed"], "completed", now - timedelta(minutes=10))
        evaluator.run_once()
    # Grafana's range ends at a whole second: what resolved within the last one shows at the next refresh.
    time.sleep(1.0)
    return vms


def _rows(conn, title: str, time_range: TimeRange, zone: str = SESSION_ZONE) -> list[dict]:
    """The panel's query as Grafana sends it, in a session set up as the data source sets it up."""
    sql = render_mysql_query(PANELS[title].sql, time_range)
    conn.execute(text("SET time_zone = :zone"), {"zone": zone})
    result = conn.exec_driver_sql(sql)
    return [dict(row._mapping) for row in result]


def _last(minutes: int) -> TimeRange:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    return TimeRange(f"now-{minutes}m", "now", now_ms)


def test_alerts_table_lists_firing_alerts_first_by_severity_then_those_resolved_in_the_range(engine, fleet):
    with engine.connect() as conn:
        everything = _rows(conn, "Alerts", _last(60))
    rows = [r for r in everything if r["VM"] in fleet.values()]
    summary = [(r["VM"], r["Rule"], r["State"], r["Severity"]) for r in rows]
    assert summary == [
        (fleet["failing"], "job_failed", "firing", "critical"),
        (fleet["late"], "rpo", "firing", "warning"),
        (fleet["fixed"], "job_failed", "resolved", "critical"),
    ]
    late = next(r for r in rows if r["VM"] == fleet["late"])
    assert "30.0 h ago" in late["Summary"] and late["Resolved"] is None
    fixed = next(r for r in rows if r["VM"] == fleet["fixed"])
    # Times are the stored UTC ones, as Grafana reads them (its driver: loc=UTC).
    assert abs(fixed["Resolved"] - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=5)
    # The whole table follows the documented order: firing, then severity, then newest first.
    states = [r["State"] for r in everything]
    assert states == sorted(states, key=lambda s: s != "firing")


def test_a_range_that_ends_before_the_resolve_keeps_firing_alerts_and_drops_resolved_ones(engine, fleet):
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    earlier = TimeRange(now_ms - 6 * 3_600_000, now_ms - 3_600_000, now_ms)
    with engine.connect() as conn:
        vms = {r["VM"] for r in _rows(conn, "Alerts", earlier)}
    assert {fleet["failing"], fleet["late"]} <= vms and fleet["fixed"] not in vms


def test_without_a_utc_session_the_time_filter_misses_what_was_just_resolved(engine, fleet):
    """The control for the data source's `timezone`: FROM_UNIXTIME answers in the session's zone."""
    with engine.connect() as conn:
        assert fleet["fixed"] in {r["VM"] for r in _rows(conn, "Alerts", _last(15))}
        assert fleet["fixed"] not in {r["VM"] for r in _rows(conn, "Alerts", _last(15), zone="+05:00")}


def test_firing_count_per_severity_is_what_the_alerts_table_holds(engine, fleet):
    with engine.connect() as conn:
        (counts,) = _rows(conn, "Firing alerts", _last(60))
        expected = dict(
            conn.execute(text("SELECT severity, COUNT(*) FROM alerts WHERE state = 'firing' GROUP BY severity")).all()
        )
    assert {k: int(v) for k, v in counts.items()} == {s: expected.get(s, 0) for s in ("critical", "warning", "info")}
    assert counts["critical"] >= 1 and counts["warning"] >= 1


def test_a_user_granted_only_the_documented_select_runs_both_panels_and_nothing_else(stack, settings, fleet):
    socket = stack.state_dir / "mariadb" / "mariadbd.sock"
    if not socket.exists():
        pytest.skip("the MariaDB of this session was not started by it (no root socket to create a user)")
    block = next(b for b in re.findall(r"```sql\n(.*?)\n```", DOC, re.S) if "CREATE USER 'grafana'" in b)
    user, password = "grafana_test", "grafana-test-password"
    statements = block.replace("'grafana'", f"'{user}'").replace("choose-a-password", password)
    root = ["mariadb", "--no-defaults", "-S", str(socket), "-u", "root"]
    subprocess.run([*root, "-e", f"DROP USER IF EXISTS '{user}'@'%'; {statements}"], check=True)
    try:
        conn = pymysql.connect(host="127.0.0.1", port=stack.mysql_port, user=user, password=password,
                               database="migratekit_oma", init_command=f"SET time_zone = '{SESSION_ZONE}'")  # fmt: skip
        with conn, conn.cursor() as cursor:
            for panel in PANELS.values():
                cursor.execute(render_mysql_query(panel.sql, _last(60)))
                assert cursor.fetchall(), panel.title
            with pytest.raises(pymysql.err.MySQLError, match="1142"):
                cursor.execute("SELECT id FROM backup_jobs LIMIT 1")
    finally:
        subprocess.run([*root, "-e", f"DROP USER IF EXISTS '{user}'@'%'"], check=True)
