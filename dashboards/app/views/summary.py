"""Dialog tab Summary: VM info, KPI cards, the failure risk's reasons, the machine's alerts and the backup history."""

from __future__ import annotations

from html import escape

from bokeh.layouts import column
from bokeh.models import (
    ColumnDataSource,
    DataTable,
    Div,
    HTMLTemplateFormatter,
    NumberFormatter,
    TableColumn,
    UIElement,
)

from dashboards.app.shaping import format_bytes, format_rate, format_time, history_columns, risk_text, rpo_text
from dashboards.app.views.common import cards_html, replace_rows

__all__ = ["SummaryView"]

# The cell holds the short form; hovering shows the sentences (escaped, as every value is).
_FLAGS_TEMPLATE = '<span title="<%- flag_sentences %>"><%- value %></span>'
_RISK_LABEL = "Failure risk"


class SummaryView:
    """Fills itself from one GET /machines/{vm_name} answer; `alerts` (the machine's alerts) goes under the KPIs."""

    def __init__(self, alerts: UIElement) -> None:
        self.source = ColumnDataSource(history_columns([]), name="history-source")
        self.info = Div(text="", name="vm-info", sizing_mode="stretch_width")
        self.kpis = Div(text="", name="summary-kpis", sizing_mode="stretch_width")
        self.risk = Div(text="", name="summary-risk", sizing_mode="stretch_width")
        number = NumberFormatter(format="0,0.0", nan_format="—")
        self.table = DataTable(
            source=self.source,
            columns=[
                # Wide enough for the longest value each shows (tests/e2e check that no cell is cut).
                TableColumn(field="created", title="Created (UTC)", width=150),
                TableColumn(field="type", title="Type", width=95),
                TableColumn(field="status", title="Status", width=90),
                TableColumn(field="size_mb", title="Size (MB)", formatter=number, width=100),
                TableColumn(field="duration", title="Duration", width=100),
                TableColumn(field="avg_speed_mbps", title="Avg speed (MB/s)", formatter=number, width=120),
                TableColumn(
                    field="flags",
                    title="Unusual?",
                    formatter=HTMLTemplateFormatter(template=_FLAGS_TEMPLATE),
                    width=300,
                ),
            ],
            autosize_mode="none",
            width=955 + 18,  # the columns, and room for the vertical scroll bar
            height=260,
            index_position=None,
            css_classes=["sendense-history"],
            name="history-table",
        )
        self.layout = column(self.info, self.kpis, self.risk, alerts, Div(text="<b>Backup history</b>"), self.table)

    def update(self, machine: dict) -> None:
        info = machine.get("machine") or {}
        known = [
            ("CPUs", info.get("cpu_count")),
            ("Memory", None if info.get("memory_mb") is None else f"{info['memory_mb']:,} MB"),
            ("OS", info.get("os_type")),
            ("Disks", info.get("disk_count")),
            ("Protection flow", info.get("protection_flow")),
        ]
        parts = [f"<b>{escape(k)}:</b> {escape(str(v))}" for k, v in known if v is not None]
        self.info.text = (
            f"<div class='vm-info'><b>VM</b> {escape(machine['vm_name'])} · <b>Repository</b> "
            f"{escape(str(machine.get('repository_id') or '—'))}<br>"
            + (" · ".join(parts) if parts else "No VM details were reported for this machine.")
            + "</div>"
        )
        k = machine.get("kpis") or {}
        self.kpis.text = cards_html(
            [
                ("Total backups", str(k.get("total_backups", 0)), "kpi-total"),
                ("Success rate", format_rate(k.get("success_rate")), "kpi-rate"),
                ("Last backup (UTC)", format_time(k.get("last_backup_at")), "kpi-last"),
                ("Total protected", format_bytes(k.get("total_protected_bytes")), "kpi-protected"),
                rpo_card(machine.get("rpo")),
                risk_card(machine.get("risk")),
            ]
        )
        self.risk.text = risk_html(machine.get("risk"))
        replace_rows(self.source, history_columns([]), history_columns(machine.get("backups") or []))


def risk_card(risk: dict | None) -> tuple[str, str, str]:
    """The failure-risk card: its level and score, e.g. "high 26 %"."""
    score, level, _ = risk_text(risk)
    return (_RISK_LABEL, f"{level} {score}" if score else "—", "kpi-risk")


def risk_html(risk: dict | None) -> str:
    """Why the next backup may fail or overrun, the weightiest reason first (every reason escaped)."""
    if not risk:
        return ""
    reasons = "; ".join(escape(r) for r in risk.get("reasons") or [])
    return f"<div class='risk-reasons'><b>{_RISK_LABEL}:</b> {reasons}</div>"


def rpo_card(rpo: dict | None) -> tuple[str, str, str]:
    """The RPO card: "out of RPO" or "within RPO", with the last success's age and the objective."""
    status, age = rpo_text(rpo)
    return (f"RPO ({age})" if age else "RPO", status or "—", "kpi-rpo")
