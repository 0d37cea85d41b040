"""The estate page (`/?view=estate`): the reports to download for a period, and the timeline and VM × day grid tabs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bokeh.layouts import column, row
from bokeh.models import Div, TabPanel, Tabs

from dashboards.app.client import DashboardApi
from dashboards.app.views.common import message_div
from dashboards.app.views.downloads import DownloadButton, PeriodChoice
from dashboards.app.views.grid import GridView
from dashboards.app.views.timeline import TimelineView

__all__ = ["EstatePage"]


class EstatePage:
    """Downloads for a period above two tabs; the grid's clicks go to `open_machine`."""

    def __init__(
        self,
        api: DashboardApi,
        schedule: Callable[[Callable[[], Awaitable[None]]], None],
        open_machine: Callable[[str], Awaitable[None]],
    ) -> None:
        self.timeline = TimelineView(api, schedule, open_machine)
        self.grid = GridView(api, schedule, open_machine)
        self.message = message_div("estate-message")
        self.period = PeriodChoice("estate-period", "7d")
        self.pdf = DownloadButton(
            "estate.pdf", "Estate report (PDF)", "estate-pdf", width=170, live=self.period,
            note="Making the estate report: the download starts in a few seconds.",
        )  # fmt: skip
        self.jobs = DownloadButton("estate.csv", "Jobs of the period (CSV)", "estate-csv", width=190, live=self.period)
        self.period.on_change(self._point)
        self._point()
        self.tabs = Tabs(
            tabs=[
                TabPanel(child=self.timeline.layout, title="Backup-window timeline"),
                TabPanel(child=self.grid.layout, title="VM × day grid"),
            ],
            name="estate-tabs",
        )
        reports = row(
            Div(text="<b>Reports of the last</b>", margin=(12, 5, 5, 5)), self.period.buttons, self.pdf.button,
            self.jobs.button, name="estate-reports",
        )  # fmt: skip
        self.layout = column(reports, self.pdf.message, self.jobs.message, self.message, self.tabs)

    def _point(self) -> None:
        self.pdf.point_at(period=self.period.value)
        self.jobs.point_at(period=self.period.value)

    def clear_selection(self) -> None:
        """After the dialog closes: the same cell or bar can be clicked again."""
        self.timeline.clear_selection()
        self.grid.clear_selection()

    async def load(self) -> None:
        await self.timeline.load()
        await self.grid.load()
