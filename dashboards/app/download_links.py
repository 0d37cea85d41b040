"""Downloads: the dashboard's own `/download/<kind>` URLs and the API request each stands for (pure).

The browser holds no API token, so a download goes through the dashboard server (`dashboards.downloads`),
which asks the API with its viewer token and streams the answer on. Only the kinds listed here exist, and
every parameter is checked against the API's own bounds before anything is asked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import quote, urlencode

from pipeline.reports.periods import PERIOD_PATTERN

__all__ = ["DOWNLOAD_KINDS", "DOWNLOAD_PREFIX", "PERIOD_CHOICES", "ApiRequest", "api_request", "download_url"]

DOWNLOAD_PREFIX = "/download/"
PERIOD_CHOICES: list[tuple[str, str]] = [("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days")]

_PERIOD = re.compile(PERIOD_PATTERN)
# The API's MOMENT_PATTERN (api/routes/reports.py): a date, or a date and time, with an optional zone.
_MOMENT = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?(Z|[+-][0-9]{2}:[0-9]{2})?$"
)
_TEXT_MAX = 255  # a VM name, a repository, a search: the API's bounds

# kind → (API path, or with "{vm}" the machine's; the parameters it takes)
DOWNLOAD_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "estate.pdf": ("/reports/estate.pdf", ("period",)),
    "estate.csv": ("/reports/estate.csv", ("period",)),
    "grid.csv": ("/reports/grid.csv", ("days", "search")),
    "timeline.csv": ("/reports/timeline.csv", ("from", "to", "repository")),
    "machine.pdf": ("/machines/{vm}/report.pdf", ("vm", "period")),
}


class ApiRequest(NamedTuple):
    """What the dashboard asks the API for one download."""

    path: str
    params: dict[str, str]


def download_url(kind: str, **params: str | int | None) -> str:
    """The dashboard's URL of a download, e.g. `/download/estate.pdf?period=7d` (empty parameters left out).

    `from` is a Python keyword: pass it as `from_`.
    """
    if kind not in DOWNLOAD_KINDS:
        raise ValueError(f"no download named {kind!r}")
    query = {key.rstrip("_"): str(value) for key, value in params.items() if value not in (None, "")}
    return DOWNLOAD_PREFIX + kind + (f"?{urlencode(query)}" if query else "")


def _check(name: str, value: str) -> str:
    if name == "period" and not _PERIOD.fullmatch(value):
        raise ValueError(f"period {value[:20]!r} is not 24h, 7d, 30d or <n>h / <n>d")
    if name in ("from", "to") and not _MOMENT.fullmatch(value):
        raise ValueError(f"{name} {value[:40]!r} is not a date or date and time (YYYY-MM-DD HH:MM)")
    if name == "days" and not (value.isdigit() and 1 <= int(value) <= 90):
        raise ValueError("days must be a whole number from 1 to 90")
    if name in ("vm", "search", "repository") and not 0 < len(value) <= _TEXT_MAX:
        raise ValueError(f"{name} must be 1 to {_TEXT_MAX} characters")
    return value


def api_request(kind: str, query: Mapping[str, str]) -> ApiRequest:
    """The API request of download `kind` with the browser's `query`; ValueError says what is wrong with it.

    Parameters the kind does not take are ignored; those it takes are checked against the API's bounds.
    """
    if kind not in DOWNLOAD_KINDS:
        raise ValueError(f"there is no download named {kind[:40]!r}")
    path, names = DOWNLOAD_KINDS[kind]
    params = {name: _check(name, query[name]) for name in names if query.get(name)}
    if "{vm}" in path:
        vm = params.pop("vm", None)
        if vm is None:
            raise ValueError("which machine? (vm is missing)")
        path = path.format(vm=quote(vm, safe=""))
    return ApiRequest(path, params)
