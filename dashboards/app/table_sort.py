"""The machines table's server-side sort: what a header click asks the API for, and how the header shows it."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["DEFAULT_SORT", "SORT_CHOICES", "Sort", "header_label", "header_tip", "sort_after_click"]


class Sort(NamedTuple):
    """One order of GET /machines: `key` is its `sort` parameter, `descending` its `order`."""

    key: str
    descending: bool

    @property
    def order(self) -> str:
        return "desc" if self.descending else "asc"

    @property
    def value(self) -> str:
        """The drop-down's value for this order, e.g. "rpo:desc"."""
        return f"{self.key}:{self.order}"

    @classmethod
    def parse(cls, value: str) -> Sort:
        key, _, order = value.partition(":")
        return cls(key, order != "asc")


# Every `sort` the API takes (pipeline/read/machines.py MACHINE_SORTS): what it orders by, its first
# click's order (the one an operator most often wants: most overdue, newest, worst rate, busiest; names
# A to Z) and the other.
_ORDERS: dict[str, tuple[str, bool, str, str]] = {
    "rpo": ("RPO", True, "most overdue first", "least overdue first"),
    "last_backup": ("Last job", True, "newest first", "oldest first"),
    "vm_name": ("VM name", False, "A → Z", "Z → A"),
    "success_rate": ("Success rate", False, "lowest first", "highest first"),
    "total_backups": ("Backups", True, "most first", "fewest first"),
}
DEFAULT_SORT = Sort("rpo", True)
SORT_CHOICES: list[tuple[str, str]] = [
    choice
    for key, (subject, first_desc, first, second) in _ORDERS.items()
    for choice in (
        (Sort(key, first_desc).value, f"{subject}: {first}"),
        (Sort(key, not first_desc).value, f"{subject}: {second}"),
    )
]


def sort_after_click(current: Sort, clicked: str) -> Sort:
    """A click on the header of `clicked`: the same column reverses its order, another starts at its first."""
    if clicked == current.key:
        return Sort(clicked, not current.descending)
    return Sort(clicked, _ORDERS[clicked][1])


def header_label(title: str, key: str | None, current: Sort) -> str:
    """The header text: the title, with ▲ (ascending) or ▼ (descending) on the column sorted by."""
    if key is None or key != current.key:
        return title
    return f"{title} {'▼' if current.descending else '▲'}"


def header_tip(key: str | None, current: Sort) -> str:
    """The header's tooltip: the order shown and what a click does, or that this column has no sort."""
    if key is None:
        return "The API cannot sort by this column"
    subject, first_desc, first, second = _ORDERS[key]
    if key != current.key:
        return f"Click to sort by {subject}, {first}"
    shown, other = (first, second) if current.descending == first_desc else (second, first)
    return f"Sorted by {subject}, {shown}; click for {other}"
