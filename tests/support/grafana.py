"""Grafana's InfluxQL interpolation re-implemented, so tests send a dashboard's queries as Grafana would.

A raw InfluxQL query in a Grafana panel is not what reaches InfluxDB. Grafana first replaces the
dashboard's template variables, then its macros, and both depend on the Grafana version:

- Template variables (`$var`, `${var}`, `${var:format}`, `[[var]]`) are replaced in the browser by
  the template service with the InfluxDB data source's formatter (`interpolateQueryExpr` in
  `public/app/plugins/datasource/influxdb/datasource.ts`, Grafana 10/11): values of multi-value
  variables are regex-escaped (`escapeRegex` of `@grafana/data`) and a list becomes `(a|b)`; a
  single-value variable is escaped only where the query uses it inside a `/.../` regex literal, and is
  left raw elsewhere (in a quoted string, say); numbers are left raw; "All" with a custom all value
  becomes that value unformatted (`.*`), "All" without one becomes the list of every option.
- Macros: with the InfluxQL backend of Grafana 10+ (`mode="backend"`, the default) the Go backend
  replaces `$timeFilter` with `time >= <from>ms and time <= <to>ms`, then `$interval`,
  `$__interval_ms` and `$__interval` (`pkg/tsdb/influxdb/influxql/models/query.go`). The older
  browser-side path (`mode="classic"`: Grafana 9 and earlier, or the backend feature toggle off)
  passes `$__interval` / `$__interval_ms` / `$interval` with the variables and then renders
  `$timeFilter` relative to `now()` when it can: `time >= now() - 6h and time <= now()`, or
  `time >= 1234ms and time <= now()` for ranges such as `now-8w` that its short form cannot express.
- `$__interval` is the time range divided by the panel's maximum data points, rounded to one of
  Grafana's steps and never below the panel's (or else the data source's) minimum interval
  (`calculateInterval`, `roundInterval` and `secondsToHms` of `rangeutil.ts`).

Only what the project's dashboard and its tests need is covered; anything else raises ValueError
rather than silently producing a query Grafana would not send.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ALL",
    "BUILTIN_VARIABLES",
    "Interval",
    "Mode",
    "PanelQuery",
    "TemplateVariable",
    "TimeRange",
    "calculate_interval",
    "escape_regex",
    "expand_env",
    "interpolate_value",
    "interval_to_ms",
    "iter_panels",
    "load_dashboard",
    "metric_find_values",
    "panel_queries",
    "referenced_variables",
    "render_panel_query",
    "render_query",
    "render_variable_query",
    "replace_variables",
    "round_interval",
    "seconds_to_hms",
    "template_variables",
    "time_filter",
]

Mode = Literal["backend", "classic"]

ALL = "$__all"
"""The value Grafana stores for a variable whose "All" option is selected."""

BUILTIN_VARIABLES = frozenset({"timeFilter", "__interval", "__interval_ms", "interval", "__from", "__to"})
"""Names Grafana fills in itself; anything else a query references must be a dashboard variable."""

# Grafana's `variableRegex` (app/features/variables/utils.ts): $name | [[name]] / [[name:fmt]] |
# ${name} / ${name.path} / ${name:fmt}. `$` not followed by a word character (the `$` anchor of a
# regex, `$/`) is not a variable.
VARIABLE_PATTERN = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")

# `escapeRegex` of @grafana/data: backslash before \ ^ $ * + ? . ( ) | [ ] { } /
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")

# What JavaScript's parseFloat accepts as a number prefix; Grafana leaves such values unescaped.
_JS_FLOAT_PREFIX = re.compile(r"^\s*[+-]?(?:Infinity|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def escape_regex(value: str) -> str:
    """Grafana's `escapeRegex`: every regex metacharacter (and `/`, the InfluxQL delimiter) escaped."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def _looks_numeric(value: str) -> bool:
    return bool(_JS_FLOAT_PREFIX.match(value))


def expand_env(value: str, env: Mapping[str, str]) -> str:
    """Grafana's environment interpolation in provisioning files: `$VAR` and `${VAR}`, `$$` for `$`.

    A variable that is not set becomes the empty string, as in Grafana.
    """

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1) or match.group(2), "")

    return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", one, value)


# --- template variables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateVariable:
    """A dashboard template variable and its current value (a string, a tuple of strings, or ALL)."""

    name: str
    type: str = "custom"
    query: str = ""
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    value: str | tuple[str, ...] = ""
    options: tuple[str, ...] = ()
    """Every option's value, which "All" without a custom all value expands to."""

    @classmethod
    def from_json(cls, model: Mapping[str, Any]) -> TemplateVariable:
        """From a `templating.list` entry of a dashboard; its saved current value becomes `value`."""
        query = model.get("query", "")
        if isinstance(query, Mapping):  # newer schema versions may store {"query": "...", "refId": ...}
            query = query.get("query", "")
        current = (model.get("current") or {}).get("value", "")
        if isinstance(current, list):
            current = ALL if current == [ALL] else tuple(current)
        return cls(
            name=model["name"],
            type=model.get("type", "custom"),
            query=str(query),
            multi=bool(model.get("multi")),
            include_all=bool(model.get("includeAll")),
            all_value=model.get("allValue"),
            value=current,
            options=tuple(o["value"] for o in model.get("options", []) if o.get("value") != ALL),
        )

    def select(self, value: str | Sequence[str], options: Sequence[str] | None = None) -> TemplateVariable:
        """This variable with another current value (ALL, one value, or several for a multi variable).

        A multi-value variable always holds a list in Grafana, even with one value selected.
        """
        if value == ALL:
            chosen: str | tuple[str, ...] = ALL
        elif isinstance(value, str):
            chosen = (value,) if self.multi else value
        else:
            if not self.multi and len(value) != 1:
                raise ValueError(f"variable {self.name} is not multi-value: one value, not {list(value)}")
            chosen = tuple(value) if self.multi else value[0]
        return dataclasses.replace(self, value=chosen, options=tuple(options) if options is not None else self.options)


def _used_inside_regex(query: str, name: str) -> bool:
    # Grafana looks for `/`, an optional `^`, anything, `$name`, an optional `$` and `/`.
    return re.search(r"/(?:\^)?(.*)(\$" + re.escape(name) + r")(?:\$)?/", query) is not None


def interpolate_value(value: str | Sequence[str], variable: TemplateVariable | None, query: str) -> str:
    """The InfluxDB data source's default formatting of one variable's value in `query`."""
    if isinstance(value, str) and _looks_numeric(value):
        return value
    if variable is not None and variable.multi:
        if isinstance(value, str):
            return escape_regex(value)
        return "(" + "|".join(escape_regex(v) for v in value) + ")"
    if not isinstance(value, str):  # "All" of a single-value variable without a custom all value
        return "(" + "|".join(escape_regex(v) for v in value) + ")"
    if variable is not None and _used_inside_regex(query, variable.name):
        return escape_regex(value)
    return value


def _format(value: str | Sequence[str], fmt: str) -> str:
    """The explicit `${var:format}` formats of Grafana's format registry that InfluxQL users need."""
    values = [value] if isinstance(value, str) else list(value)
    if fmt == "raw":
        return ",".join(values)
    if fmt == "regex":
        escaped = [escape_regex(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    raise ValueError(f"variable format {fmt!r} is not implemented by this test helper")


def replace_variables(
    text: str,
    variables: Mapping[str, TemplateVariable],
    scoped: Mapping[str, str] | None = None,
) -> str:
    """One pass of Grafana's template service over `text` with the InfluxDB formatter.

    `scoped` holds Grafana's own per-request values (`__interval`, `timeFilter`, ...): they are
    inserted as they are. Unknown names are left untouched, as Grafana leaves them.
    """
    scoped = scoped or {}

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if match.group(5):
            raise ValueError(f"field paths such as {match.group(0)!r} are not implemented by this test helper")
        if name in scoped:
            return scoped[name]
        variable = variables.get(name)
        if variable is None:
            return match.group(0)
        value = variable.value
        if value == ALL:
            # A custom all value (such as `.*`) is inserted without any formatting.
            if variable.all_value:
                return variable.all_value
            value = variable.options
        if fmt:
            return _format(value, fmt)
        return interpolate_value(value, variable, text)

    return VARIABLE_PATTERN.sub(one, text)


def referenced_variables(query: str) -> set[str]:
    """Every variable name a query refers to, in any of Grafana's syntaxes."""
    return {m.group(1) or m.group(2) or m.group(4) for m in VARIABLE_PATTERN.finditer(query)}


# --- time range and interval ----------------------------------------------------------------------


def interval_to_ms(text: str) -> int:
    """A Grafana interval such as `10s`, `>1m`, `1d` or `500ms` in milliseconds."""
    match = re.fullmatch(r">?\s*(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an interval this test helper understands (e.g. 10s, 1m, 1d)")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


def _relative_ms(raw: str | int, now_ms: int) -> int:
    if isinstance(raw, int):
        return raw
    if raw == "now":
        return now_ms
    match = re.fullmatch(r"now-(\d+)(s|m|h|d|w)", raw)
    if not match:
        raise ValueError(f"time {raw!r} is not 'now', 'now-<n><s|m|h|d|w>' or epoch milliseconds")
    return now_ms - int(match.group(1)) * _UNIT_MS[match.group(2)]


@dataclass(frozen=True)
class TimeRange:
    """A dashboard time range as Grafana keeps it: raw (`now-6h`, `now`) or absolute epoch milliseconds."""

    raw_from: str | int = "now-6h"
    raw_to: str | int = "now"
    now_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    @property
    def from_ms(self) -> int:
        return _relative_ms(self.raw_from, self.now_ms)

    @property
    def to_ms(self) -> int:
        return _relative_ms(self.raw_to, self.now_ms)

    def for_panel(self, time_from: str | None) -> TimeRange:
        """A panel's "relative time" override (`timeFrom: "8w"` means `now-8w` to `now`)."""
        if not time_from:
            return self
        raw = time_from if time_from.startswith("now") else f"now-{time_from}"
        return TimeRange(raw, "now", self.now_ms)


def _influx_time(raw: str | int, now_ms: int) -> str:
    # Grafana's getInfluxTime: only `now` and `now-<n><d|h|m|s>` keep a relative form.
    if raw == "now":
        return "now()"
    if isinstance(raw, str):
        match = re.fullmatch(r"now-(\d+)([dhms])", raw)
        if match:
            return f"now() - {int(match.group(1))}{match.group(2)}"
    return f"{_relative_ms(raw, now_ms)}ms"


def time_filter(time_range: TimeRange, mode: Mode = "backend") -> str:
    """What `$timeFilter` becomes in a query."""
    if mode == "backend":
        return f"time >= {time_range.from_ms}ms and time <= {time_range.to_ms}ms"
    start = _influx_time(time_range.raw_from, time_range.now_ms)
    end = _influx_time(time_range.raw_to, time_range.now_ms)
    return f"time >= {start} and time <= {end}"


# Grafana's roundInterval: upper bound of the raw interval (ms) -> the step it is rounded to (ms).
_ROUNDING = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (450_000, 300_000),
    (1_100_000, 900_000),
    (2_000_000, 1_800_000),
    (5_400_000, 3_600_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)


def round_interval(interval_ms: float) -> int:
    """Grafana's roundInterval: the raw interval snapped to a readable step."""
    for bound, step in _ROUNDING:
        if interval_ms < bound:
            return step
    return 31_536_000_000


def seconds_to_hms(seconds: float) -> str:
    """Grafana's secondsToHms: only the largest whole unit (90 s is `1m`), as `$__interval` shows it."""
    years = math.floor(seconds / 31_536_000)
    days = math.floor((seconds % 31_536_000) / 86_400)
    hours = math.floor((seconds % 31_536_000 % 86_400) / 3_600)
    minutes = math.floor((seconds % 31_536_000 % 86_400 % 3_600) / 60)
    whole_seconds = math.floor(seconds % 31_536_000 % 86_400 % 3_600 % 60)
    for amount, unit in ((years, "y"), (days, "d"), (hours, "h"), (minutes, "m"), (whole_seconds, "s")):
        if amount:
            return f"{amount}{unit}"
    millis = math.floor(seconds * 1000.0)
    return f"{millis}ms" if millis else "less than a millisecond"


@dataclass(frozen=True)
class Interval:
    """`$__interval` (text, e.g. `10s`) and `$__interval_ms`."""

    text: str
    ms: int


def calculate_interval(time_range: TimeRange, max_data_points: int, min_interval: str | None = None) -> Interval:
    """Grafana's calculateInterval: range / max data points, rounded, at least the minimum interval."""
    low_limit = interval_to_ms(min_interval) if min_interval else 1
    interval_ms = round_interval((time_range.to_ms - time_range.from_ms) / max_data_points)
    if low_limit > interval_ms:
        interval_ms = low_limit
    return Interval(seconds_to_hms(interval_ms / 1000), interval_ms)


# --- whole queries --------------------------------------------------------------------------------


def render_query(
    query: str,
    variables: Mapping[str, TemplateVariable],
    time_range: TimeRange,
    interval: Interval,
    *,
    mode: Mode = "backend",
) -> str:
    """A raw InfluxQL query as Grafana sends it to InfluxDB (see the module docstring for the modes)."""
    unknown = referenced_variables(query) - set(variables) - BUILTIN_VARIABLES
    if unknown:
        raise ValueError(f"query refers to variables that are not defined: {sorted(unknown)}: {query}")
    range_vars = {"__from": str(time_range.from_ms), "__to": str(time_range.to_ms)}
    if mode == "classic":
        # The interval travels with the variables; $timeFilter is a second template pass.
        scoped = {"__interval": interval.text, "__interval_ms": str(interval.ms), "interval": interval.text}
        text = replace_variables(query, variables, {**range_vars, **scoped})
        return replace_variables(text, {}, {"timeFilter": time_filter(time_range, "classic")})
    if mode != "backend":
        raise ValueError(f"unknown mode {mode!r}")
    # The browser leaves $__interval and $__interval_ms to the backend, which replaces these four
    # literal strings in this order (so `${__interval}` would reach InfluxDB unreplaced, as in Grafana).
    text = replace_variables(query, variables, range_vars)
    text = text.replace("$timeFilter", time_filter(time_range, "backend"))
    text = text.replace("$interval", interval.text)
    text = text.replace("$__interval_ms", str(interval.ms))
    return text.replace("$__interval", interval.text)


def render_variable_query(
    variable: TemplateVariable,
    variables: Mapping[str, TemplateVariable],
    time_range: TimeRange,
    *,
    mode: Mode = "backend",
) -> str:
    """A query variable's own query, with the other variables it depends on replaced."""
    return render_query(variable.query, variables, time_range, Interval("1m", 60_000), mode=mode)


def metric_find_values(query: str, results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The options Grafana's InfluxQL response parser makes of a variable query's answer (deduplicated)."""
    column = 1 if "show tag values" in query.lower() else 0
    seen: dict[str, None] = {}
    for result in results:
        for series in result.get("series", []):
            for row in series.get("values", []):
                seen.setdefault(str(row[column]), None)
    return list(seen)


# --- dashboards -----------------------------------------------------------------------------------


def load_dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside rows (collapsed rows keep theirs in `panels`)."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def template_variables(dashboard: Mapping[str, Any]) -> dict[str, TemplateVariable]:
    return {v["name"]: TemplateVariable.from_json(v) for v in dashboard.get("templating", {}).get("list", [])}


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel, with what decides its time range and `$__interval`."""

    panel_id: int
    title: str
    panel_type: str
    ref_id: str
    query: str
    result_format: str
    time_from: str | None
    min_interval: str | None
    max_data_points: int

    def time_range(self, dashboard_range: TimeRange) -> TimeRange:
        return dashboard_range.for_panel(self.time_from)

    def interval(self, dashboard_range: TimeRange, datasource_min_interval: str | None) -> Interval:
        # The panel's own minimum interval wins over the data source's (PanelQueryRunner).
        return calculate_interval(
            self.time_range(dashboard_range), self.max_data_points, self.min_interval or datasource_min_interval
        )


DASHBOARD_WIDTH_PX = 1920
"""Grafana's default max data points is the panel's width in pixels; panels are sized on this screen."""


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every visible InfluxQL target of every panel (rows have none; SQL panels: tests/support/grafana_sql.py)."""
    found = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            source = target.get("datasource") or panel.get("datasource") or {}
            if target.get("hide") or source.get("type", "influxdb") != "influxdb":
                continue
            width = panel.get("gridPos", {}).get("w", 24)
            found.append(
                PanelQuery(
                    panel_id=panel["id"],
                    title=panel.get("title", ""),
                    panel_type=panel.get("type", ""),
                    ref_id=target.get("refId", "A"),
                    query=target.get("query", ""),
                    result_format=target.get("resultFormat", "time_series"),
                    time_from=panel.get("timeFrom"),
                    min_interval=panel.get("interval"),
                    max_data_points=int(panel.get("maxDataPoints") or DASHBOARD_WIDTH_PX * width // 24),
                )
            )
    return found


def render_panel_query(
    panel_query: PanelQuery,
    variables: Mapping[str, TemplateVariable],
    dashboard_range: TimeRange,
    *,
    datasource_min_interval: str | None = None,
    mode: Mode = "backend",
) -> str:
    """A panel target's query as Grafana sends it, with the panel's time override and interval."""
    return render_query(
        panel_query.query,
        variables,
        panel_query.time_range(dashboard_range),
        panel_query.interval(dashboard_range, datasource_min_interval),
        mode=mode,
    )
