"""Main page: the protection-flows table (one row per VM) with a search box."""

from __future__ import annotations

from bokeh.models import ColumnDataSource, DataTable, NumberFormatter, TableColumn, TextInput

from dashboards.app.shaping import filter_machines, machines_columns

__all__ = ["MachinesView"]


class MachinesView:
    """Holds the last machines answer; the search box filters it without asking the API again."""

    def __init__(self) -> None:
        self.machines: list[dict] = []
        self.source = ColumnDataSource(machines_columns([]), name="machines-source")
        number = NumberFormatter(format="0,0.0", nan_format="—")
        self.search = TextInput(placeholder="Search VM, repository, type or status", width=420, name="machine-search")
        self.table = DataTable(
            source=self.source,
            columns=[
                TableColumn(field="vm_name", title="VM", width=220),
                TableColumn(field="repository_id", title="Repository", width=140),
                TableColumn(field="last_type", title="Last job type", width=130),
                TableColumn(field="last_status", title="Last status", width=100),
                TableColumn(field="last_time", title="Last job (UTC)", width=160),
                TableColumn(field="last_size_mb", title="Last size (MB)", formatter=number, width=110),
                TableColumn(field="success_rate", title="Success rate (%)", formatter=number, width=120),
                TableColumn(field="total_backups", title="Backups", width=80),
            ],
            sortable=True,
            selectable=True,
            index_position=None,
            width=1080,
            height=520,
            name="machines-table",
        )
        self.search.on_change("value_input", lambda _attr, _old, _new: self.apply_filter())

    def set_machines(self, machines: list[dict]) -> None:
        self.machines = machines
        self.apply_filter()

    def apply_filter(self) -> None:
        self.source.selected.indices = []
        self.source.data = machines_columns(filter_machines(self.machines, self.search.value_input or ""))

    def vm_at(self, index: int) -> str:
        return self.source.data["vm_name"][index]
