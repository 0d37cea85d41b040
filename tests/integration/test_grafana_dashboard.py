"""The provisioned Grafana dashboard, every query of it sent as Grafana sends it, against the real pipeline's data.

A fleet of jobs goes through the real API and scheduler: some finished days ago and rolled up (so
only their kept `job_summary` points remain), two still running (raw `job_telemetry` points).
Names carry spaces, quotes and regex metacharacters, so a variable Grafana did not escape would
either break the query or match nothing. Also here: the retention policies the setup creates, and
the series cardinality that the rollup's DROP SERIES keeps flat.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import yaml

from pipeline.scheduler import SchedulerJobs
from pipeline.tsdb.influx import SyncInflux, quote_ident
from pipeline.tsdb.schema import ensure_influx_schema
from tests.support.devstack import PROJECT_DIR
from tests.support.grafana import (
    ALL,
    Mode,
    PanelQuery,
    TemplateVariable,
    TimeRange,
    escape_regex,
    load_dashboard,
    metric_find_values,
    panel_queries,
    render_panel_query,
    render_variable_query,
    template_variables,
)
from tests.support.probes import count_series, update_body

DASHBOARD = load_dashboard(PROJECT_DIR / "infra/grafana/dashboards/backup-telemetry.json")
DATASOURCE = yaml.safe_load((PROJECT_DIR / "infra/grafana/provisioning/datasources/sendense.yaml").read_text())
MIN_INTERVAL = DATASOURCE["datasources"][0]["jsonData"]["timeInterval"]
QUERIES = panel_queries(DASHBOARD)
RUNNING_PANELS = {"Running jobs", "Progress of running jobs", "Live transfer speed per job",
                  "Aggregate throughput per repository", "Bottleneck of running jobs (stage load)"}  # fmt: skip
HISTORY_PANELS = {"Average and peak speed per job", "Finished jobs by status",
                  "Duration trend per VM (completed jobs)", "Recent finished jobs"}  # fmt: skip


@dataclass(frozen=True)
class FinishedJob:
    job_id: str
    vm_name: str
    repository_id: str
    status: str


@dataclass
class Fleet:
    """What the fixture sent through the pipeline, to compare the dashboard's answers with."""

    repo_a: str
    repo_b: str
    vm_sql: str
    vm_web: str
    vm_files: str
    running: dict[str, str] = field(default_factory=dict)  # vm name -> running job id
    running_repo: dict[str, str] = field(default_factory=dict)  # running job id -> repository
    running_progress: dict[str, float] = field(default_factory=dict)  # running job id -> last progress
    finished: list[FinishedJob] = field(default_factory=list)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _create(client: httpx.Client, vm_name: str, repository: str, **extra: Any) -> str:
    response = client.post(
        "/backups", json={"vm_name": vm_name, "backup_type": "incremental", "repository_id": repository, **extra}
    )
    assert response.status_code == 201, response.text
    return response.json()["backup_id"]


def _stream(client: httpx.Client, job_id: str, start: datetime, points: int, speed: int, **extra: Any) -> None:
    for i in range(points):
        body = update_body(i, total=points, transfer_speed_bps=speed + i * 1_000_000, **extra)
        body["timestamp"] = _iso(start + timedelta(seconds=60 * i))
        response = client.post(f"/telemetry/backup/{job_id}", json=body)
        assert response.status_code == 202, response.text


@pytest.fixture(scope="module")
def fleet(api: str, stack, settings) -> Iterator[Fleet]:
    """Jobs of three VMs in two repositories, finished on past days and rolled up, two still running."""
    u = uuid.uuid4().hex[:8]
    fleet = Fleet(
        repo_a=f"repo-a.{u}",
        repo_b=f"repo [b] {u}",
        vm_sql=f"SQL Server (prod) 1.2 {u}",
        vm_web=f"web-01 {u}",
        vm_files=f"files+share* 'east' {u}",
    )
    scheduler = SchedulerJobs(
        dataclasses.replace(settings, scheduler=dataclasses.replace(settings.scheduler, rollup_batch=1_000_000))
    )
    client = httpx.Client(
        base_url=f"{api}/api/v1", headers={"Authorization": f"Bearer {stack.agent_token}"}, timeout=30
    )
    now = datetime.now(UTC)
    history = [
        (fleet.vm_sql, fleet.repo_a, 6, "completed"),
        (fleet.vm_sql, fleet.repo_a, 4, "failed"),
        (fleet.vm_sql, fleet.repo_a, 2, "completed"),
        (fleet.vm_web, fleet.repo_a, 5, "completed"),
        (fleet.vm_web, fleet.repo_a, 1, "completed"),
        (fleet.vm_files, fleet.repo_b, 3, "completed"),
        (fleet.vm_files, fleet.repo_b, 1, "cancelled"),
    ]
    try:
        for n, (vm_name, repository, days_ago, status) in enumerate(history):
            job_id = _create(client, vm_name, repository)
            start = now - timedelta(days=days_ago, hours=2)
            points = 5 + n  # different lengths, so durations differ from job to job
            _stream(client, job_id, start, points, speed=40_000_000 + n * 5_000_000)
            final = update_body(points, total=points, status=status)
            final["timestamp"] = _iso(start + timedelta(seconds=60 * points))
            if status == "failed":
                final["error_message"] = "NBD connection reset by peer"
            response = client.post(f"/telemetry/backup/{job_id}", json=final)
            assert response.status_code == 200, response.text
            fleet.finished.append(FinishedJob(job_id, vm_name, repository, status))
        scheduler.roll_up()
        for job in fleet.finished:
            assert client.get(f"/telemetry/history/{job.job_id}").json()["data_source"] == "rolled_up"

        for vm_name, repository in ((fleet.vm_sql, fleet.repo_a), (fleet.vm_files, fleet.repo_b)):
            job_id = _create(client, vm_name, repository, disks=[{"disk_index": 0, "size_bytes": 10_000}])
            start = now - timedelta(minutes=9)
            # Agents that report stage loads: a slow repository makes target write the busiest.
            loads = {"source_read": 35.0, "processing": 20.0, "network": 45.0, "target_write": 88.0}
            _stream(client, job_id, start, 8, speed=80_000_000, stage_load=loads)
            # Per-disk points too: panels must count each job once, from its job-level points.
            _stream(client, job_id, start, 8, speed=30_000_000, disk_index=0)
            fleet.running[vm_name] = job_id
            fleet.running_repo[job_id] = repository
            fleet.running_progress[job_id] = update_body(7, total=8)["progress_percent"]
        yield fleet
    finally:
        # Leave no running job behind for other tests: finish them and roll them up.
        for job_id in fleet.running.values():
            client.post(f"/telemetry/backup/{job_id}", json=update_body(8, total=8, status="cancelled"))
        scheduler.roll_up()
        client.close()
        scheduler.close()


# --- rendering as Grafana does --------------------------------------------------------------------

RANGES = {
    # (how the macros are rendered, what the time picker holds)
    "backend": ("backend", "relative"),
    "classic-relative": ("classic", "relative"),
    "classic-absolute": ("classic", "absolute"),
}


def _time_range(kind: str) -> TimeRange:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    if kind == "absolute":
        return TimeRange(now_ms - 6 * 3_600_000, now_ms, now_ms)
    return TimeRange("now-6h", "now", now_ms)


def _selection(fleet: Fleet, name: str) -> dict[str, Any]:
    return {
        "all": {"repository": ALL, "vm": ALL, "job": ALL},
        "one-vm": {"repository": [fleet.repo_a], "vm": [fleet.vm_sql], "job": [fleet.running[fleet.vm_sql]]},
        "several": {"repository": [fleet.repo_a, fleet.repo_b], "vm": [fleet.vm_sql, fleet.vm_files], "job": ALL},
        "finished-only": {"repository": [fleet.repo_a], "vm": [fleet.vm_web], "job": ALL},
    }[name]


def _resolve_variables(
    influx: SyncInflux, settings, selection: dict[str, Any], time_range: TimeRange, mode: Mode
) -> dict[str, TemplateVariable]:
    """Each query variable's options from its own query (given the variables before it), then the selection.

    This is what Grafana does on load: `vm` is listed for the chosen repositories, `job` for the
    chosen repositories and VMs. A selected value the variable query does not offer is a failure.
    """
    variables = template_variables(DASHBOARD)
    variables["summary_rp"] = dataclasses.replace(variables["summary_rp"], value=settings.influx.summary_rp)
    for name, variable in list(variables.items()):
        if variable.type != "query":
            continue
        query = render_variable_query(variable, variables, time_range, mode=mode)
        options = metric_find_values(query, influx.query(query))
        chosen = selection[name]
        if chosen != ALL:
            missing = set(chosen) - set(options)
            assert not missing, f"variable {name} does not offer {missing}; its query was: {query}"
        variables[name] = variable.select(chosen, options)
    return variables


def _run(influx: SyncInflux, query: PanelQuery, variables, time_range: TimeRange, mode: Mode):
    rendered = render_panel_query(query, variables, time_range, datasource_min_interval=MIN_INTERVAL, mode=mode)
    results = influx.query(rendered, epoch="ms")  # raises InfluxError on a parse or query error
    series = [s for r in results for s in r.get("series", [])]
    return rendered, series


def _has_values(series: list[dict]) -> bool:
    """At least one row with a non-null value besides the time column."""
    for s in series:
        columns = s["columns"]
        for row in s.get("values", []):
            if any(v is not None for c, v in zip(columns, row, strict=True) if c != "time"):
                return True
    return False


@pytest.mark.parametrize("selection", ["all", "one-vm", "several"])
@pytest.mark.parametrize("rendering", list(RANGES))
def test_every_panel_query_parses_and_returns_data(fleet, influx, settings, selection, rendering):
    mode, kind = RANGES[rendering]
    time_range = _time_range(kind)
    variables = _resolve_variables(influx, settings, _selection(fleet, selection), time_range, mode)
    assert len(QUERIES) >= 8
    empty = []
    for query in QUERIES:
        rendered, series = _run(influx, query, variables, time_range, mode)
        if not _has_values(series):
            empty.append(f"{query.title!r}: {rendered}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


@pytest.mark.parametrize("mode", ["backend", "classic"])
def test_variable_queries_list_running_and_finished_jobs_names(fleet, influx, settings, mode):
    time_range = _time_range("relative")
    everything = _resolve_variables(influx, settings, _selection(fleet, "all"), time_range, mode)
    assert {fleet.repo_a, fleet.repo_b} <= set(everything["repository"].options)
    assert {fleet.vm_sql, fleet.vm_web, fleet.vm_files} <= set(everything["vm"].options)
    assert set(fleet.running.values()) <= set(everything["job"].options)
    # Rolled-up jobs have no raw series left, so they are no longer offered as running jobs.
    assert not {job.job_id for job in fleet.finished} & set(everything["job"].options)

    in_repo_a = _resolve_variables(influx, settings, _selection(fleet, "one-vm"), time_range, mode)
    # web-01 has only finished jobs: it is listed from the kept job_summary points.
    assert set(in_repo_a["vm"].options) == {fleet.vm_sql, fleet.vm_web}
    assert in_repo_a["job"].options == (fleet.running[fleet.vm_sql],)


def _by_title(fleet: Fleet, influx, settings, selection: str) -> dict[str, list[dict]]:
    time_range = _time_range("relative")
    variables = _resolve_variables(influx, settings, _selection(fleet, selection), time_range, "backend")
    return {q.title: _run(influx, q, variables, time_range, "backend")[1] for q in QUERIES}


def _rows(series: list[dict]) -> list[dict]:
    """Every row of every series as a dict, with the series' tags in it."""
    return [
        {**s.get("tags", {}), **dict(zip(s["columns"], row, strict=True))}
        for s in series
        for row in s.get("values", [])
    ]


def test_panels_show_what_the_pipeline_recorded(fleet, influx, settings):
    answers = _by_title(fleet, influx, settings, "several")
    chosen = {fleet.vm_sql, fleet.vm_files}
    finished = [job for job in fleet.finished if job.vm_name in chosen]

    assert _rows(answers["Running jobs"])[0]["running jobs"] == 2
    progress = {row["job_id"]: row["progress"] for row in _rows(answers["Progress of running jobs"])}
    assert progress == fleet.running_progress
    speed_jobs = {s["tags"]["job_id"] for s in answers["Live transfer speed per job"]}
    assert speed_jobs == set(fleet.running.values())
    throughput = {s["tags"]["repository_id"] for s in answers["Aggregate throughput per repository"]}
    assert throughput == {fleet.repo_a, fleet.repo_b}
    loads = _rows(answers["Bottleneck of running jobs (stage load)"])
    assert {row["job_id"] for row in loads} == set(fleet.running.values())
    assert all(row["target write"] == 88.0 and row["network"] == 45.0 for row in loads)

    per_job = _rows(answers["Average and peak speed per job"])
    assert len(per_job) == len(finished), "one point per finished job"
    assert all(0 < row["average"] <= row["peak"] for row in per_job)
    counts: dict[str, int] = {}
    for row in _rows(answers["Finished jobs by status"]):
        counts[row["status"]] = counts.get(row["status"], 0) + row["count"]
    expected: dict[str, int] = {}
    for job in finished:
        expected[job.status] = expected.get(job.status, 0) + 1
    assert counts == expected
    trend_vms = {s["tags"]["vm_name"] for s in answers["Duration trend per VM (completed jobs)"]}
    assert trend_vms == {job.vm_name for job in finished if job.status == "completed"}
    table = _rows(answers["Recent finished jobs"])
    assert {row["job_id"] for row in table} == {job.job_id for job in finished}
    assert {row["vm_name"] for row in table} == chosen


def test_running_panels_are_empty_for_a_vm_whose_jobs_are_all_rolled_up(fleet, influx, settings):
    answers = _by_title(fleet, influx, settings, "finished-only")
    assert set(answers) == RUNNING_PANELS | HISTORY_PANELS
    for title in RUNNING_PANELS:
        assert not _has_values(answers[title]), f"{title} still shows a rolled-up job"
    for title in HISTORY_PANELS:
        assert _has_values(answers[title]), f"{title} lost the kept job_summary points"


def test_vm_name_inserted_without_grafanas_escaping_would_match_nothing(fleet, influx, settings):
    """The control for the escaping: the same panel with the raw name finds no series, escaped it does."""
    speed = next(q for q in QUERIES if q.title == "Live transfer speed per job")
    time_range = _time_range("relative")
    variables = _resolve_variables(influx, settings, _selection(fleet, "one-vm"), time_range, "backend")
    rendered, series = _run(influx, speed, variables, time_range, "backend")
    assert escape_regex(fleet.vm_sql) in rendered and _has_values(series)
    unescaped = rendered.replace(escape_regex(fleet.vm_sql), fleet.vm_sql)
    assert unescaped != rendered
    assert not [s for r in influx.query(unescaped) for s in r.get("series", [])]


def test_influxql_examples_of_the_docs_run(fleet, influx, settings):
    doc = (PROJECT_DIR / "docs" / "grafana.md").read_text(encoding="utf-8")
    examples = re.findall(r"```influxql\n(.*?)\n```", doc, re.S)
    assert len(examples) >= 2
    time_range = _time_range("relative")
    variables = _resolve_variables(influx, settings, _selection(fleet, "all"), time_range, "backend")
    for example in examples:
        query = PanelQuery(0, "docs", "timeseries", "A", example, "time_series", None, None, 1000)
        rendered, _ = _run(influx, query, variables, time_range, "backend")  # raises if InfluxDB rejects it
        assert "$" not in rendered.replace("$/", "")


# --- retention policies ---------------------------------------------------------------------------

_GO_UNITS = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_INFLUXQL_UNITS = {"w": 604_800, "d": 86_400, **_GO_UNITS, "u": 1e-6, "µ": 1e-6}


def _seconds(duration: str, units: dict[str, float]) -> float:
    """`720h0m0s` (as SHOW RETENTION POLICIES prints it) or `30d` / `INF` (as configured); INF is 0."""
    if duration in ("INF", "inf", "0s"):
        return 0
    parts = re.findall(r"(\d+)(ms|us|µs|ns|[a-zµ])", duration)
    assert "".join(n + u for n, u in parts) == duration, f"cannot read duration {duration!r}"
    return sum(int(n) * units[u] for n, u in parts)


def _policies(influx: SyncInflux, database: str) -> dict[str, tuple[float, bool]]:
    results = influx.query(f"SHOW RETENTION POLICIES ON {quote_ident(database)}", db=False)
    series = results[0]["series"][0]
    rows = [dict(zip(series["columns"], row, strict=True)) for row in series["values"]]
    return {row["name"]: (_seconds(row["duration"], _GO_UNITS), row["default"]) for row in rows}


def test_setup_created_both_retention_policies_with_the_configured_durations(influx, settings):
    policies = _policies(influx, settings.influx.database)
    assert policies[settings.influx.raw_rp] == (_seconds(settings.influx.raw_retention, _INFLUXQL_UNITS), True)
    assert policies[settings.influx.summary_rp] == (
        _seconds(settings.influx.summary_retention, _INFLUXQL_UNITS),
        False,
    )


def test_retention_durations_follow_the_settings_when_changed(influx, settings, unique):
    database = f"sendense_rp_{unique}"
    first = dataclasses.replace(settings.influx, database=database, raw_retention="7d", summary_retention="520w")
    second = dataclasses.replace(first, raw_retention="14d", summary_retention="INF")
    try:
        ensure_influx_schema(first)
        assert _policies(influx, database)[first.raw_rp] == (7 * 86_400, True)
        assert _policies(influx, database)[first.summary_rp] == (520 * 604_800, False)
        # Running the setup again with other durations alters the existing policies.
        ensure_influx_schema(second)
        assert _policies(influx, database)[second.raw_rp] == (14 * 86_400, True)
        assert _policies(influx, database)[second.summary_rp] == (0, False)
    finally:
        influx.query(f"DROP DATABASE {quote_ident(database)}", db=False)


# --- cardinality ----------------------------------------------------------------------------------


def _cardinality(influx: SyncInflux, where: str = "") -> int:
    results = influx.query(f'SHOW SERIES EXACT CARDINALITY FROM "job_telemetry" {where}')
    return sum(row[0] for r in results for s in r.get("series", []) for row in s["values"])


def test_rollup_of_a_batch_leaves_no_series_of_its_jobs_and_keeps_their_summaries(
    agent, influx, settings, scheduler_jobs, unique
):
    vm_prefix = f"card {unique} ("
    jobs = []
    for n in range(6):
        job_id = _create(agent, f"{vm_prefix}{n})", f"repo-card-{unique}", disks=[{"disk_index": 0}, {"disk_index": 1}])
        for i in range(1, 4):
            assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, total=3)).status_code == 202
            for disk in (0, 1):
                body = update_body(i, total=3, disk_index=disk)
                assert agent.post(f"/telemetry/backup/{job_id}", json=body).status_code == 202
        jobs.append(job_id)
    ours = "WHERE job_id =~ /^(" + "|".join(escape_regex(j) for j in jobs) + ")$/"

    # One series per job and disk: the job-level series and two per-disk series per job.
    assert [count_series(influx, j) for j in jobs] == [3] * 6
    assert _cardinality(influx, ours) == 18
    total_before = _cardinality(influx)

    for job_id in jobs:
        final = agent.post(f"/telemetry/backup/{job_id}", json=update_body(3, total=3, status="completed"))
        assert final.status_code == 200, final.text
    assert scheduler_jobs.roll_up().rolled_up >= len(jobs)

    assert [count_series(influx, j) for j in jobs] == [0] * 6
    assert _cardinality(influx, ours) == 0
    # Other finished jobs may have been rolled up by the same run: the total shrinks by 18 or more.
    assert _cardinality(influx) <= total_before - 18
    summaries = influx.query(
        f'SELECT "job_id", "status" FROM {quote_ident(settings.influx.summary_rp)}."job_summary" '
        f"WHERE vm_name =~ /^{escape_regex(vm_prefix)}/"
    )
    rows = _rows([s for r in summaries for s in r.get("series", [])])
    assert sorted(row["job_id"] for row in rows) == sorted(jobs), "exactly one kept summary per job"
    assert {row["status"] for row in rows} == {"completed"}
