"""The machine's dialog: Summary, Performance and Analytics tabs, and its report's download; one per page.

Both pages open it (the main page from the machines table and the alerts, the estate page from the
VM × day grid), the same way: `await dialog.open(vm_name)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import Dialog, Div, TabPanel, Tabs

from dashboards.app.client import ApiError, DashboardApi
from dashboards.app.views.alert_actions import AlertActions
from dashboards.app.views.alerts import MachineAlerts
from dashboards.app.views.analytics import AnalyticsView
from dashboards.app.views.common import message_div
from dashboards.app.views.downloads import DownloadButton, PeriodChoice
from dashboards.app.views.performance import PerformanceView
from dashboards.app.views.summary import SummaryView
from dashboards.auth import DashboardUser

__all__ = ["MachineDialog"]

# Bokeh places a dialog at (200 px, 200 px), 80 % × 60 % of the window: at 1280 × 800 that is 480 px
# for tabs whose charts need 750. Sized to the window instead, and scrolling inside (its content
# box scrolls). Moving, resizing, pinning, collapsing and (un)maximising would fight these rules
# (Bokeh repositions through a stylesheet that this one overrides), so the dialog offers only Close.
DIALOG_CSS = """
:host { left: max(8px, calc(50vw - 600px)); top: 40px; width: min(1200px, calc(100vw - 16px));
  height: calc(100vh - 56px); }
.bk-grip { display: none; }
.bk-title { cursor: default; }
"""


class MachineDialog:
    """The dialog and its tabs; `on_closed` runs when the operator closes it."""

    def __init__(
        self,
        doc: Document,
        api: DashboardApi,
        user: DashboardUser | None,
        alerts_changed: Callable[[], Awaitable[None]],
        on_error: Callable[[str], None],
    ) -> None:
        self.doc = doc
        self.api = api
        self.on_error = on_error
        self.on_closed: Callable[[], None] | None = None
        self.vm_name: str | None = None
        self.machine_alerts = MachineAlerts(
            api, AlertActions(api, user, doc.add_next_tick_callback, alerts_changed, "machine-alert")
        )
        self.summary = SummaryView(self.machine_alerts.layout)
        self.performance = PerformanceView(api, doc.add_next_tick_callback)
        self.analytics = AnalyticsView()
        self.message = message_div("dialog-message")  # no room while empty: the report's row goes first
        self.period = PeriodChoice("machine-report-period", "30d")
        self.report = DownloadButton(
            "machine.pdf", "Machine report (PDF)", "machine-report-download", width=180, live=self.period,
            note="Making the machine's report: the download starts in a few seconds.",
        )  # fmt: skip
        self.period.on_change(self._point_report)
        self.tabs = Tabs(
            tabs=[
                TabPanel(child=self.summary.layout, title="Summary"),
                TabPanel(child=self.performance.layout, title="Performance"),
                TabPanel(child=self.analytics.layout, title="Analytics"),
            ],
            name="machine-tabs",
        )
        report_row = row(
            Div(text="<b>Report of the last</b>", margin=(12, 5, 5, 5)),
            self.period.buttons,
            self.report.button,
            name="machine-report",
        )
        self.dialog = Dialog(
            title="Machine",
            content=column(self.message, report_row, self.report.message, self.tabs),
            visible=False,
            close_action="hide",  # keep the views: the next machine reuses them
            movable="none",
            resizable="none",
            pinnable=False,
            collapsible=False,
            minimizable=False,
            maximizable=False,
            stylesheets=[DIALOG_CSS],
            name="machine-dialog",
        )
        self.dialog.on_change("visible", self._visible)

    @property
    def visible(self) -> bool:
        return bool(self.dialog.visible)

    def _point_report(self) -> None:
        if self.vm_name:
            self.report.point_at(vm=self.vm_name, period=self.period.value)

    async def open(self, vm_name: str, alert_id: int | None = None) -> None:
        """Read the machine and show its dialog on the Summary tab (with `alert_id` chosen among its alerts)."""
        try:
            machine = await self.api.machine(vm_name)
        except ApiError as exc:
            self.on_error(str(exc))
            return
        self.on_error("")
        self.message.text = ""
        self.report.message.text = ""
        self.vm_name = vm_name
        self._point_report()
        # The title is plain text (Bokeh escapes it): escaping it here too showed "&lt;" to operators.
        self.dialog.title = f"Machine {vm_name}"
        self.summary.update(machine)
        self.analytics.update(machine)
        await self.machine_alerts.load(vm_name, select=alert_id)
        await self.performance.load(machine)
        self.tabs.active = 0
        if self.dialog.document is None:
            # Sent to the browser on first use: the page's first paint does not wait for the
            # dialog's tabs and figures (measured: most of the table's time to show).
            self.doc.add_root(self.dialog)
        self.dialog.visible = True

    async def refresh_alerts(self) -> None:
        """Re-read the open machine's alerts (after an action, or periodically)."""
        if self.visible:
            await self.machine_alerts.load()

    def _visible(self, _attr: str, _old: bool, new: bool) -> None:
        if not new:
            # Closed: stop following a live job.
            self.performance.live = False
            if self.on_closed is not None:
                self.on_closed()
