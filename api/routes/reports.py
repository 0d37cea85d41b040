"""`/reports`: the estate summary of a period, the VM × day grid, the backup-window timeline, and their CSVs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from anyio import to_thread
from litestar import Controller, Response, get
from litestar.openapi import ResponseSpec
from litestar.params import Parameter, QueryParameter
from litestar.response import Stream
from sqlalchemy import Engine

from api.documents import document_response, document_responses
from api.errors import bad_request
from api.openapi import errors
from api.report_schemas import EstateReport, GridPage, Timeline
from api.schemas import to_body
from pipeline.clock import utc_now
from pipeline.reports.estate import estate_summary
from pipeline.reports.exports import JOB_COLUMNS, csv_chunks, period_jobs
from pipeline.reports.grid import machine_grid, machine_grid_rows
from pipeline.reports.inputs import read_estate_document
from pipeline.reports.periods import PERIOD_PATTERN, Period, parse_period
from pipeline.reports.render import estate_html
from pipeline.reports.timeline import timeline
from pipeline.settings import Settings

__all__ = ["From", "PeriodParam", "ReportController", "To", "report_period"]

PeriodParam = Annotated[
    str | None,
    Parameter(
        pattern=PERIOD_PATTERN,
        description="24h, 7d, 30d or any <n>h / <n>d ending now (default 7d); or use from and to",
    ),
]
# Dates and times as text with a pattern: Litestar would also take "0.5" as a datetime (seconds since 1970).
MOMENT_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?(Z|[+-][0-9]{2}:[0-9]{2})?$"
)
From = Annotated[
    str | None,
    QueryParameter(
        name="from", pattern=MOMENT_PATTERN, description="start: RFC 3339 / ISO 8601 (no zone: the display zone)"
    ),
]
To = Annotated[str | None, QueryParameter(name="to", pattern=MOMENT_PATTERN, description="end, excluded (default now)")]


def _moment(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad_request(f"{name}: {exc}") from exc


_PDF, _HTML = document_responses("pdf"), document_responses("html")
_CSV = {200: ResponseSpec(data_container=str, media_type="text/csv", description="CSV, streamed")}


def report_period(settings: Settings, period: str | None, start: str | None, end: str | None) -> Period:
    try:
        return parse_period(period, _moment(start, "from"), _moment(end, "to"), utc_now(), settings.reports.zone)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc


def _csv(name: str, chunks) -> Stream:
    return Stream(chunks, media_type="text/csv; charset=utf-8",
                  headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


class ReportController(Controller):
    path = "/reports"
    tags = ["reports"]

    @get("/estate", operation_id="estateReport", responses=errors(400, 401, 503))
    async def estate(
        self, engine: Engine, settings: Settings, period: PeriodParam = None, start: From = None, end: To = None
    ) -> EstateReport:
        """The estate over a period: jobs by status, success rate, bytes protected, failures and their reasons,
        machines out of RPO now, unusual runs, the slowest and largest jobs, the busiest hour (display time
        zone), and week-over-week against the period of the same length before. A job belongs to the
        period it was created in."""
        chosen = report_period(settings, period, start, end)
        summary = await to_thread.run_sync(
            estate_summary, engine, chosen, settings.reports.zone, settings.api.rpo_default, utc_now()
        )
        return to_body(summary, EstateReport)

    @get("/estate.pdf", operation_id="estateReportPdf", responses={**_PDF, **errors(400, 401, 503)})
    async def estate_pdf(
        self, engine: Engine, settings: Settings, period: PeriodParam = None, start: From = None, end: To = None
    ) -> Response:
        """The estate report to hand over, as a PDF: the summary figures, week-over-week, charts per day (jobs by
        status, bytes protected, success rate) and by hour, failures with their reasons, machines out of RPO,
        the riskiest machines, the slowest, largest and unusual jobs. Lists are bounded (the 10 first, and how
        many more), so a month of a large estate stays a few pages."""
        return await _estate_document(engine, settings, "pdf", period, start, end)

    @get("/estate.html", operation_id="estateReportHtml", responses={**_HTML, **errors(400, 401, 503)})
    async def estate_html(
        self, engine: Engine, settings: Settings, period: PeriodParam = None, start: From = None, end: To = None
    ) -> Response:
        """The estate report as one HTML page (the PDF's source and the daily e-mail's body)."""
        return await _estate_document(engine, settings, "html", period, start, end)

    @get("/estate.csv", operation_id="estateJobsCsv", responses={**_CSV, **errors(400, 401, 503)})
    async def estate_csv(
        self, engine: Engine, settings: Settings, period: PeriodParam = None, start: From = None, end: To = None
    ) -> Stream:
        """Every job of the period as CSV, in creation order, streamed (a million jobs hold one page in memory)."""
        chosen = report_period(settings, period, start, end)
        return _csv("sendense-jobs.csv", csv_chunks(JOB_COLUMNS, period_jobs(engine, chosen)))

    @get("/grid", operation_id="machineDayGrid", responses=errors(400, 401, 503))
    async def grid(
        self,
        engine: Engine,
        settings: Settings,
        days: Annotated[int, Parameter(ge=1, le=90)] = 30,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0,
        search: Annotated[str | None, Parameter(max_length=255)] = None,
    ) -> GridPage:
        """Machines (by name, searched like the flows table) × the last `days` calendar days of the display time
        zone: each cell `success`, `warning` (completed after a failure that day), `failed`, `running`, `none`."""
        page = await to_thread.run_sync(
            lambda: machine_grid(
                engine, settings.reports.zone, utc_now(), days=days, limit=limit, offset=offset, search=search or None
            )  # fmt: skip
        )
        return to_body(page, GridPage)

    @get("/grid.csv", operation_id="machineDayGridCsv", responses={**_CSV, **errors(400, 401, 503)})
    async def grid_csv(
        self,
        engine: Engine,
        settings: Settings,
        days: Annotated[int, Parameter(ge=1, le=90)] = 30,
        search: Annotated[str | None, Parameter(max_length=255)] = None,
    ) -> Stream:
        """The whole grid as CSV (a machine a row, a day a column), streamed a page of machines at a time."""
        header, rows = machine_grid_rows(engine, settings.reports.zone, utc_now(), days=days, search=search or None)
        return _csv("sendense-grid.csv", csv_chunks(header, rows))

    @get("/timeline", operation_id="backupTimeline", responses=errors(400, 401, 503))
    async def timeline(
        self,
        engine: Engine,
        settings: Settings,
        start: From = None,
        end: To = None,
        repository: Annotated[str | None, Parameter(max_length=255)] = None,
    ) -> Timeline:
        """Every job between `from` and `to` (default the last 24 hours; at most 7 days) as a bar from its start
        to its end, grouped by repository, with the jobs running at once and their summed speed in 288
        buckets."""
        return to_body(await _timeline(engine, settings, start, end, repository), Timeline)

    @get("/timeline.csv", operation_id="backupTimelineCsv", responses={**_CSV, **errors(400, 401, 503)})
    async def timeline_csv(
        self,
        engine: Engine,
        settings: Settings,
        start: From = None,
        end: To = None,
        repository: Annotated[str | None, Parameter(max_length=255)] = None,
    ) -> Stream:
        """The timeline's bars as CSV."""
        answer = await _timeline(engine, settings, start, end, repository)
        columns = ("backup_id", "vm_name", "repository_id", "type", "job_type", "status", "start", "end",
                   "avg_speed_bps")  # fmt: skip
        rows = ([bar[c] for c in columns] for bar in answer["bars"])
        return _csv("sendense-timeline.csv", csv_chunks(columns, rows))


async def _estate_document(engine: Engine, settings: Settings, kind, period, start, end) -> Response:
    chosen = report_period(settings, period, start, end)
    zone = settings.reports.zone
    document = await to_thread.run_sync(read_estate_document, engine, chosen, zone, settings.api.rpo_default, utc_now())
    return await document_response(lambda: estate_html(document), kind, "estate", "report", zone)


async def _timeline(engine: Engine, settings: Settings, start: str | None, end: str | None, repository: str | None):
    begin, finish = _range(settings, start, end)
    try:
        return await to_thread.run_sync(timeline, engine, begin, finish, utc_now(), repository)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc


def _range(settings: Settings, start_text: str | None, end_text: str | None) -> tuple[datetime, datetime]:
    """`from`/`to` as naive UTC (no zone: the display zone's); alone, either one is a day's end or start; neither:
    the last 24 hours."""

    start, end = _moment(start_text, "from"), _moment(end_text, "to")

    def utc(moment: datetime) -> datetime:
        zoned = moment if moment.tzinfo else moment.replace(tzinfo=settings.reports.zone)
        return zoned.astimezone(UTC).replace(tzinfo=None)

    if start is not None and end is None:  # `from` alone: the day from then
        begin = utc(start)
        return begin, begin + timedelta(hours=24)
    finish = utc(end) if end is not None else utc_now()
    begin = utc(start) if start is not None else finish - timedelta(hours=24)
    return begin, finish
