"""Grafana's MySQL data source re-implemented as far as the dashboard's SQL panels need, so that tests send
their queries as Grafana would.

Grafana's backend replaces the macros of a raw SQL query (`pkg/tsdb/mysql/macros.go`, Grafana 10/11)
with the time range in whole Unix seconds: `$__timeFilter(col)` becomes
`col BETWEEN FROM_UNIXTIME(<from>) AND FROM_UNIXTIME(<to>)`, `$__timeFrom()` / `$__timeTo()` become
`FROM_UNIXTIME(<from>)` / `FROM_UNIXTIME(<to>)`, `$__unixEpochFilter(col)` becomes
`col >= <from> AND col <= <to>`. `FROM_UNIXTIME` answers in the session's time zone, which Grafana sets
from the data source's `jsonData.timezone` (`SET time_zone`, through the driver's DSN); without one it is
the server's. Template variables are not covered: the dashboard's SQL uses none, and a query that does is
refused here rather than sent unlike Grafana would send it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.support.grafana import TimeRange, iter_panels

__all__ = ["SqlPanelQuery", "render_mysql_query", "sql_panel_queries"]

_MACRO = re.compile(r"\$(\w+)\(([^)]*)\)")
_VARIABLE = re.compile(r"\$\{?\w+|\[\[\w+")


@dataclass(frozen=True)
class SqlPanelQuery:
    """One SQL target of one panel."""

    panel_id: int
    title: str
    panel_type: str
    ref_id: str
    sql: str
    result_format: str
    datasource_uid: str


def sql_panel_queries(dashboard: Mapping[str, Any]) -> list[SqlPanelQuery]:
    """Every visible target of the dashboard on a MySQL data source."""
    found = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            source = target.get("datasource") or panel.get("datasource") or {}
            if target.get("hide") or source.get("type") != "mysql":
                continue
            found.append(
                SqlPanelQuery(
                    panel["id"], panel.get("title", ""), panel.get("type", ""), target.get("refId", "A"),
                    target.get("rawSql", ""), target.get("format", "time_series"), source.get("uid", ""),
                )
            )  # fmt: skip
    return found


def render_mysql_query(sql: str, time_range: TimeRange) -> str:
    """`sql` with Grafana's MySQL macros replaced for `time_range`."""
    start, end = time_range.from_ms // 1000, time_range.to_ms // 1000

    def macro(match: re.Match[str]) -> str:
        name, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
        if name == "__timeFilter" and args[0]:
            return f"{args[0]} BETWEEN FROM_UNIXTIME({start}) AND FROM_UNIXTIME({end})"
        if name in ("__timeFrom", "__timeTo") and args == [""]:
            return f"FROM_UNIXTIME({start if name == '__timeFrom' else end})"
        if name == "__unixEpochFilter" and args[0]:
            return f"{args[0]} >= {start} AND {args[0]} <= {end}"
        raise ValueError(f"macro ${name}({match.group(2)}) is not one the test renderer knows")

    rendered = _MACRO.sub(macro, sql)
    leftover = _VARIABLE.findall(rendered)
    if leftover:
        raise ValueError(f"template variables {leftover} in SQL are not rendered like Grafana here")
    return rendered
