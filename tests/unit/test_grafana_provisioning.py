"""Grafana provisioning files and dashboard are what Grafana needs, and the test expander interpolates like Grafana.

The dashboard's queries are run against a real InfluxDB in tests/integration/test_grafana_dashboard.py;
here are the parts that need no server: file shapes, references between the files, the docs, and
the interpolation rules of tests/support/grafana.py that the integration test relies on.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from pipeline.settings import InfluxSettings, MySQLSettings
from tests.support.devstack import PROJECT_DIR
from tests.support.grafana import (
    ALL,
    TemplateVariable,
    TimeRange,
    calculate_interval,
    escape_regex,
    expand_env,
    iter_panels,
    load_dashboard,
    metric_find_values,
    panel_queries,
    referenced_variables,
    render_query,
    replace_variables,
    seconds_to_hms,
    template_variables,
    time_filter,
)
from tests.support.grafana_sql import render_mysql_query, sql_panel_queries

GRAFANA_DIR = PROJECT_DIR / "infra" / "grafana"
DATASOURCE_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "sendense.yaml"
MYSQL_DATASOURCE_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "sendense-mysql.yaml"
PROVIDER_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "sendense.yaml"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "backup-telemetry.json"
DOC_FILE = PROJECT_DIR / "docs" / "grafana.md"
FILTER_VARIABLES = ("repository", "vm", "job")
ENV_REFERENCE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _datasource(path: Path = DATASOURCE_FILE) -> dict:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert document["apiVersion"] == 1
    (datasource,) = document["datasources"]
    return datasource


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return load_dashboard(DASHBOARD_FILE)


# --- provisioning files ---------------------------------------------------------------------------


def test_datasource_file_has_the_fields_grafana_provisioning_requires():
    datasource = _datasource()
    assert datasource["name"] and datasource["uid"]
    assert datasource["type"] == "influxdb"
    assert datasource["access"] == "proxy", "Grafana no longer runs InfluxDB queries from the browser"
    json_data = datasource["jsonData"]
    assert json_data["version"] == "InfluxQL"
    assert json_data["dbName"] == "sendense" == datasource["database"]
    assert json_data["httpMode"] in ("GET", "POST")
    assert "password" not in datasource, "a password belongs in secureJsonData, which Grafana encrypts"


def test_datasource_url_and_credentials_come_from_the_environment():
    datasource = _datasource()
    assert datasource["url"] == "${SENDENSE_GRAFANA_INFLUX_URL}"
    assert datasource["user"] == "${SENDENSE_GRAFANA_INFLUX_USER}"
    assert datasource["secureJsonData"]["password"] == "${SENDENSE_GRAFANA_INFLUX_PASSWORD}"
    env = {
        "SENDENSE_GRAFANA_INFLUX_URL": "http://influx.example:8086",
        "SENDENSE_GRAFANA_INFLUX_USER": "grafana",
        "SENDENSE_GRAFANA_INFLUX_PASSWORD": "pa$$word",
    }
    url = urlparse(expand_env(datasource["url"], env))
    assert (url.scheme, url.hostname, url.port) == ("http", "influx.example", 8086)
    # Grafana expands once: a `$` inside a variable's value is not expanded again.
    assert expand_env(datasource["secureJsonData"]["password"], env) == "pa$$word"


def test_dashboard_provider_loads_the_dashboards_folder():
    document = yaml.safe_load(PROVIDER_FILE.read_text(encoding="utf-8"))
    assert document["apiVersion"] == 1
    (provider,) = document["providers"]
    assert provider["name"] and provider["type"] == "file"
    path = expand_env(provider["options"]["path"], {"SENDENSE_GRAFANA_DASHBOARDS_DIR": str(GRAFANA_DIR / "dashboards")})
    assert DASHBOARD_FILE.parent.samefile(path)


def test_mysql_datasource_file_reads_the_pipelines_database_in_utc_with_credentials_from_the_environment():
    datasource = _datasource(MYSQL_DATASOURCE_FILE)
    assert datasource["name"] and datasource["uid"] and datasource["type"] == "mysql"
    assert datasource["access"] == "proxy" and datasource["editable"] is False
    database = MySQLSettings().url.rsplit("/", 1)[1].split("?")[0]
    assert datasource["database"] == datasource["jsonData"]["database"] == database == "migratekit_oma"
    # Stored times are UTC; $__timeFilter's FROM_UNIXTIME answers in the session's zone.
    assert datasource["jsonData"]["timezone"] == "+00:00"
    assert datasource["url"] == "${SENDENSE_GRAFANA_MYSQL_HOST}"
    assert datasource["user"] == "${SENDENSE_GRAFANA_MYSQL_USER}"
    assert datasource["secureJsonData"]["password"] == "${SENDENSE_GRAFANA_MYSQL_PASSWORD}"
    assert "password" not in datasource


def test_dashboard_refers_to_the_provisioned_datasources_everywhere(dashboard):
    influx = {"type": "influxdb", "uid": _datasource()["uid"]}
    mysql = {"type": "mysql", "uid": _datasource(MYSQL_DATASOURCE_FILE)["uid"]}
    for panel in iter_panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] in (influx, mysql), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            # Each target in its own data source's language.
            assert ("rawSql" in target) == (panel["datasource"] == mysql), panel["title"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == influx, variable["name"]


# --- dashboard ------------------------------------------------------------------------------------


def test_dashboard_is_backup_telemetry_with_unique_panel_ids(dashboard):
    assert dashboard["title"] == "Backup telemetry"
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in iter_panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in iter_panels(dashboard):
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]


def test_dashboard_has_every_panel_the_issue_asks_for(dashboard):
    titles = {panel["title"]: panel for panel in iter_panels(dashboard)}
    live = [
        "Live transfer speed per job",
        "Progress of running jobs",
        "Running jobs",
        "Aggregate throughput per repository",
    ]
    history = ["Average and peak speed per job", "Finished jobs by status", "Duration trend per VM (completed jobs)"]
    for title in live:
        assert '"job_telemetry"' in titles[title]["targets"][0]["query"], title
    for title in history:
        assert '"$summary_rp"."job_summary"' in titles[title]["targets"][0]["query"], title
    # One series per job for the speed, per repository for the throughput.
    outer_group_by = {title: titles[title]["targets"][0]["query"].rsplit("GROUP BY", 1)[-1] for title in live}
    assert '"job_id"' in outer_group_by["Live transfer speed per job"]
    assert '"repository_id"' in outer_group_by["Aggregate throughput per repository"]


def test_every_query_is_raw_influxql_bounded_by_the_time_picker(dashboard):
    queries = panel_queries(dashboard)
    assert len(queries) >= 8
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            assert target["rawQuery"] is True, panel["title"]
    for query in queries:
        assert "$timeFilter" in query.query, query.title
        # Job-level points only: per-disk points of the same job would be counted again.
        if '"job_telemetry"' in query.query:
            assert "\"disk_index\" = ''" in query.query, query.title
        for group_by in re.findall(r"GROUP BY time\(([^)]*)\)", query.query):
            assert group_by == "$__interval", query.title


def test_filter_variables_are_multi_value_regexes_with_all(dashboard):
    variables = template_variables(dashboard)
    for name in FILTER_VARIABLES:
        variable = variables[name]
        assert variable.type == "query" and variable.query.startswith("SHOW TAG VALUES"), name
        assert variable.multi and variable.include_all and variable.all_value == ".*", name
        assert variable.value == ALL, f"{name} should start on All"
    # VMs and repositories whose jobs are all rolled up exist only in job_summary.
    for name in ("repository", "vm"):
        assert '"job_summary"' in variables[name].query, name
    # Every use of a filter variable is an anchored regex, so values are escaped and All is `.*`.
    for query in [q.query for q in panel_queries(dashboard)] + [v.query for v in variables.values()]:
        for name in referenced_variables(query) & set(FILTER_VARIABLES):
            uses = re.findall(r"(\S+ \S+ \S*\$" + name + r"\b\S*)", query)
            assert uses and all(re.fullmatch(r'"\w+" =~ /\^\$' + name + r"\$/", u) for u in uses), (name, uses)


def test_every_variable_a_query_refers_to_is_defined(dashboard):
    variables = template_variables(dashboard)
    for query in panel_queries(dashboard):
        render_query(query.query, variables, TimeRange(now_ms=10**12), calculate_interval(TimeRange(), 100))
    for variable in variables.values():
        if variable.type == "query":
            render_query(variable.query, variables, TimeRange(now_ms=10**12), calculate_interval(TimeRange(), 100))


def test_summary_retention_policy_variable_matches_the_pipelines_default(dashboard, monkeypatch):
    monkeypatch.delenv("SENDENSE_INFLUX_SUMMARY_RP", raising=False)
    assert template_variables(dashboard)["summary_rp"].value == InfluxSettings().summary_rp


def test_influx_settings_default_to_a_30_day_raw_and_an_infinite_summary_policy(monkeypatch):
    for name in ("SENDENSE_INFLUX_RAW_RETENTION", "SENDENSE_INFLUX_SUMMARY_RETENTION"):
        monkeypatch.delenv(name, raising=False)
    defaults = InfluxSettings()
    assert (defaults.raw_retention, defaults.summary_retention) == ("30d", "INF")


# --- documentation --------------------------------------------------------------------------------


def test_docs_explain_every_environment_variable_and_setting_a_grafana_user_needs():
    doc = DOC_FILE.read_text(encoding="utf-8")
    env_names = {
        a or b
        for path in (DATASOURCE_FILE, MYSQL_DATASOURCE_FILE, PROVIDER_FILE)
        for a, b in ENV_REFERENCE.findall(path.read_text(encoding="utf-8"))
    }
    assert env_names, "the provisioning files take URL, credentials and path from the environment"
    settings = {"SENDENSE_INFLUX_RAW_RETENTION", "SENDENSE_INFLUX_SUMMARY_RETENTION", "SENDENSE_INFLUX_SUMMARY_RP"}
    for name in env_names | settings:
        assert name in doc, name
    for word in ("job_telemetry", "job_summary", "raw_telemetry", "job_summaries", "DBRP", "Token", "SHOW TAG VALUES"):
        assert word in doc, word


def test_readme_links_the_grafana_doc():
    readme = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    assert "## Grafana" in readme and "docs/grafana.md" in readme.split("## Grafana", 1)[1]


# --- the alerts panels (MySQL) -------------------------------------------------------------------


def test_dashboard_opens_on_the_alerts_firing_count_and_table(dashboard):
    sql = {q.title: q for q in sql_panel_queries(dashboard)}
    assert set(sql) == {"Firing alerts", "Alerts"}
    assert {q.result_format for q in sql.values()} == {"table"}
    first_row = min(iter_panels(dashboard), key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    assert first_row["type"] == "row" and "Alerts" in first_row["title"]
    # Firing alerts whatever the time picker says; resolved ones within it.
    assert "$__timeFilter" not in sql["Firing alerts"].sql
    assert "state = 'firing' OR $__timeFilter(resolved_at)" in sql["Alerts"].sql


def test_alerts_panels_read_only_the_alerts_table_so_one_grant_suffices(dashboard):
    doc = DOC_FILE.read_text(encoding="utf-8")
    for query in sql_panel_queries(dashboard):
        assert re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", query.sql) == ["alerts"], query.title
        assert query.sql.lstrip().upper().startswith("SELECT"), query.title
    assert "GRANT SELECT ON migratekit_oma.alerts TO 'grafana'" in doc
    for name in ("SENDENSE_GRAFANA_MYSQL_HOST", "SENDENSE_GRAFANA_MYSQL_USER", "SENDENSE_GRAFANA_MYSQL_PASSWORD"):
        assert name in doc, name


def test_mysql_macros_are_rendered_in_whole_unix_seconds_as_grafana_does():
    window = TimeRange(1_700_000_000_999, 1_700_003_600_500, 0)
    assert render_mysql_query("WHERE $__timeFilter(resolved_at)", window) == (
        "WHERE resolved_at BETWEEN FROM_UNIXTIME(1700000000) AND FROM_UNIXTIME(1700003600)"
    )
    assert render_mysql_query("$__timeFrom() $__timeTo() $__unixEpochFilter(t)", window) == (
        "FROM_UNIXTIME(1700000000) FROM_UNIXTIME(1700003600) t >= 1700000000 AND t <= 1700003600"
    )
    with pytest.raises(ValueError, match="template variables"):
        render_mysql_query("WHERE vm_name IN ($vm)", window)
    with pytest.raises(ValueError, match="macro"):
        render_mysql_query("GROUP BY $__timeGroup(t, '5m')", window)


# --- the expander ---------------------------------------------------------------------------------

VM = TemplateVariable("vm", type="query", multi=True, include_all=True, all_value=".*")


def test_multi_value_selection_becomes_an_escaped_alternation():
    chosen = VM.select(["SQL Server (prod) 1.2", "web-01"])
    assert replace_variables('"vm_name" =~ /^$vm$/', {"vm": chosen}) == (
        r'"vm_name" =~ /^(SQL Server \(prod\) 1\.2|web-01)$/'
    )
    # A multi-value variable holds a list even with one value chosen.
    assert replace_variables("/^$vm$/", {"vm": VM.select("a.b")}) == r"/^(a\.b)$/"


def test_all_with_a_custom_all_value_is_inserted_unformatted():
    assert replace_variables('"vm_name" =~ /^$vm$/', {"vm": VM.select(ALL)}) == '"vm_name" =~ /^.*$/'


def test_all_without_a_custom_all_value_lists_every_option_escaped():
    variable = TemplateVariable("vm", multi=False, include_all=True).select(ALL, ["a+b", "c"])
    assert replace_variables("/^$vm$/", {"vm": variable}) == r"/^(a\+b|c)$/"


def test_single_value_is_raw_in_a_string_and_escaped_inside_a_regex():
    single = TemplateVariable("vm").select("SQL Server (prod) 1.2")
    assert replace_variables("\"vm_name\" = '$vm'", {"vm": single}) == "\"vm_name\" = 'SQL Server (prod) 1.2'"
    assert replace_variables('"vm_name" =~ /^$vm$/', {"vm": single}) == r'"vm_name" =~ /^SQL Server \(prod\) 1\.2$/'


def test_numbers_are_inserted_as_they_are():
    number = TemplateVariable("limit").select("12.5")
    assert replace_variables("/^$limit$/ LIMIT $limit", {"limit": number}) == "/^12.5$/ LIMIT 12.5"


def test_all_three_variable_syntaxes_and_explicit_formats():
    chosen = {"vm": VM.select(["a", "b.c"])}
    assert replace_variables("$vm ${vm} [[vm]]", chosen) == r"(a|b\.c) (a|b\.c) (a|b\.c)"
    assert replace_variables("${vm:pipe} [[vm:csv]] ${vm:singlequote}", chosen) == "a|b.c a,b.c 'a','b.c'"
    assert replace_variables("${vm:regex}", {"vm": VM.select("x.y")}) == r"x\.y"


def test_unknown_names_are_left_alone_and_rejected_when_rendering():
    assert replace_variables("$nope and $vm", {"vm": VM.select(ALL)}) == "$nope and .*"
    with pytest.raises(ValueError, match="nope"):
        render_query("SELECT 1 WHERE $nope", {}, TimeRange(), calculate_interval(TimeRange(), 100))


@pytest.mark.parametrize(
    "name",
    ["SQL Server (prod) 1.2", "files+share* 'east'", "a|b", "[x]{2}", "^$", "C$share", "1.2.3.4", "x/y", "back\\slash"],
)
def test_escaped_names_match_themselves_and_nothing_else(name):
    pattern = "^" + escape_regex(name) + "$"
    assert re.fullmatch(pattern, name)
    assert not re.fullmatch(pattern, name + "x") and not re.fullmatch(pattern, "x" + name)


def test_time_filter_relative_and_absolute():
    now = 1_800_000_000_000
    relative = TimeRange("now-6h", "now", now)
    assert time_filter(relative, "classic") == "time >= now() - 6h and time <= now()"
    assert time_filter(relative, "backend") == f"time >= {now - 6 * 3_600_000}ms and time <= {now}ms"
    # Grafana's short relative form knows only d, h, m and s: weeks become absolute milliseconds.
    weeks = relative.for_panel("8w")
    assert time_filter(weeks, "classic") == f"time >= {now - 8 * 604_800_000}ms and time <= now()"
    absolute = TimeRange(1234, 5678, now)
    assert time_filter(absolute, "classic") == time_filter(absolute, "backend") == "time >= 1234ms and time <= 5678ms"


def test_interval_follows_range_and_data_points_but_never_goes_below_the_minimum():
    six_hours = TimeRange("now-6h", "now", 10**12)
    assert calculate_interval(six_hours, 960).text == "20s"
    assert calculate_interval(six_hours, 960, "1m").text == "1m"
    assert calculate_interval(six_hours.for_panel("8w"), 960) == calculate_interval(six_hours.for_panel("56d"), 960)
    daily = calculate_interval(six_hours.for_panel("8w"), 960, "1d")
    assert (daily.text, daily.ms) == ("1d", 86_400_000)
    assert [seconds_to_hms(s) for s in (0.5, 90, 604_800)] == ["500ms", "1m", "7d"]


@pytest.mark.parametrize("mode", ["backend", "classic"])
def test_interval_macros_are_replaced_in_both_modes(mode):
    rendered = render_query(
        "GROUP BY time($__interval) LIMIT $__interval_ms WHERE $timeFilter",
        {},
        TimeRange("now-1h", "now", 10**12),
        calculate_interval(TimeRange("now-1h", "now", 10**12), 360),
        mode=mode,
    )
    assert rendered.startswith("GROUP BY time(10s) LIMIT 10000 WHERE time >= ")


def test_backend_mode_leaves_braced_interval_unreplaced_as_grafana_does():
    # Grafana's backend replaces the literal `$__interval` only; the dashboard must not use `${__interval}`.
    rendered = render_query("time(${__interval})", {}, TimeRange(), calculate_interval(TimeRange(), 100))
    assert rendered == "time(${__interval})"


def test_variable_options_are_the_tag_values_deduplicated():
    results = [
        {"series": [{"name": "job_summary", "values": [["vm_name", "b"], ["vm_name", "a"]]}]},
        {"series": [{"name": "job_telemetry", "values": [["vm_name", "a"]]}]},
    ]
    assert metric_find_values('SHOW TAG VALUES WITH KEY = "vm_name"', results) == ["b", "a"]
