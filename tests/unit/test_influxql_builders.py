"""InfluxQL lives in pipeline/tsdb/queries.py only, and no value reaches its text: values are bound."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.tsdb import queries

PROJECT = Path(__file__).resolve().parents[2]
# Tokens only InfluxQL has (SQL shares SELECT and FROM): time buckets, bound $parameters, series DDL.
INFLUXQL = re.compile(r"GROUP BY time\(|\$job_id|\$start\b|SHOW SERIES|DROP SERIES|RETENTION POLICY|fill\(none\)")


def test_no_influxql_outside_the_tsdb_package():
    offenders = []
    for path in [*PROJECT.glob("pipeline/**/*.py"), *PROJECT.glob("api/**/*.py"), *PROJECT.glob("dashboards/**/*.py")]:
        if "tsdb" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if INFLUXQL.search(line) and not stripped.startswith("#") and "`" not in stripped:
                offenders.append(f"{path.relative_to(PROJECT)}:{number}: {stripped}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize(
    "build",
    [
        lambda job: queries.job_samples('"db"."rp"."m"', job, 1, 2),
        lambda job: queries.job_totals('"db"."rp"."m"', job, 1, 2),
        lambda job: queries.stage_means('"db"."rp"."m"', job, 1, 2),
        lambda job: queries.disk_curves('"db"."rp"."m"', job, 1, 2, 60),
        lambda job: queries.disk_stats('"db"."rp"."m"', job, 1, 2),
        lambda job: queries.chart_bounds('"db"."rp"."m"', job, 1, 2),
        lambda job: queries.chart_buckets('"db"."rp"."m"', job, 1, 2, 1000, 2000, 5),
        lambda job: queries.drop_series(job),
        lambda job: queries.job_aggregates('"db"."rp"."m"', job, 1, 2),
        lambda job: queries.job_buckets('"db"."rp"."m"', job, 10**6, 10**9, 7),
        lambda job: queries.job_points_at('"db"."rp"."m"', job, 1, 2, [(1, 2), (5, 9)]),
        lambda job: queries.chart_after('"db"."rp"."m"', job, 1, 2, 1, 600),
        lambda job: queries.disk_curves_live('"db"."rp"."m"', job, 1, 2, 60),
        lambda job: queries.disk_points_after('"db"."rp"."m"', job, 1, 2, [0, 7], [5, 9], [400, 3]),
    ],
)
def test_a_job_id_is_a_bound_parameter_never_text(build):
    hostile = "x' OR 1=1; DROP MEASUREMENT job_telemetry; --"
    query = build(hostile)
    assert hostile not in query.text and query.params["job_id"] == hostile


def test_several_job_ids_to_drop_are_bound_parameters_each():
    hostile = ["a' OR 1=1 --", 'b"; DROP DATABASE x', "c"]
    query = queries.drop_series_many(hostile)
    assert not any(h in query.text for h in hostile) and sorted(query.params.values()) == sorted(hostile)
    assert query.text.count("$j") == 3
    with pytest.raises(ValueError):
        queries.drop_series_many([])


def test_identifiers_are_quoted_and_durations_checked():
    assert queries.source('my "db"', "rp") == '"my \\"db\\""."rp"."job_telemetry"'
    assert queries.retention_policy("sendense", "raw", "30d", default=True, exists=False).text == (
        'CREATE RETENTION POLICY "raw" ON "sendense" DURATION 30d REPLICATION 1 DEFAULT'
    )
    with pytest.raises(ValueError):
        queries.retention_policy("sendense", "raw", "30d; DROP DATABASE sendense", default=False, exists=True)


def test_each_disk_of_a_tail_read_is_bound_with_its_own_time():
    query = queries.disk_points_after('"db"."rp"."m"', "j", 1, 2, [0, 12], [5, 9], [400, 3])
    assert query.params | {} == {"job_id": "j", "start": 1, "end": 2, "d0": "0", "a0": 5, "d1": "12", "a1": 9}
    assert query.text.count("SELECT") == 2 and "LIMIT 401" in query.text and "LIMIT 4" in query.text
    with pytest.raises(ValueError):
        queries.disk_points_after('"db"."rp"."m"', "j", 1, 2, [], [], [])
    with pytest.raises(ValueError):
        queries.disk_points_after('"db"."rp"."m"', "j", 1, 2, [1], [1, 2], [3])
