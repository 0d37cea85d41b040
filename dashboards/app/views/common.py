"""Pieces shared by the views: messages and KPI cards (text escaped, never trusted), table rows replaced."""

from __future__ import annotations

from html import escape

from bokeh.models import ColumnDataSource, Div

__all__ = ["CARD_CSS", "cards_html", "message_div", "message_html", "replace_rows"]

CARD_CSS = (
    "<style>.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;"
    "padding:8px 14px;min-width:130px;background:#fafafa}.card .k{font-size:12px;color:#666}"
    ".card .v{font-size:20px;font-weight:600}.msg{padding:8px 12px;border-radius:4px;margin:4px 0}"
    ".msg.error{background:#fdecea;color:#8a1c1c}.msg.info{background:#eef4fb;color:#1f4e79}</style>"
)


_MESSAGE_CSS = (
    ".msg{padding:8px 12px;border-radius:4px;margin:4px 0}.msg.error{background:#fdecea;color:#8a1c1c}"
    ".msg.info{background:#eef4fb;color:#1f4e79}"
)


def message_html(text: str, kind: str = "info") -> str:
    """A readable message box (kind "info" or "error"); empty text gives an empty string."""
    return f'<div class="msg {kind}">{escape(text)}</div>' if text else ""


def cards_html(cards: list[tuple[str, str, str]]) -> str:
    """KPI cards from (label, value, css name) triples; the css name lets tests find a value."""
    body = "".join(
        f'<div class="card"><div class="k">{escape(label)}</div><div class="v {name}">{escape(value)}</div></div>'
        for label, value, name in cards
    )
    return f'{CARD_CSS}<div class="cards">{body}</div>'


def replace_rows(source: ColumnDataSource, empty: dict[str, list], rows: dict[str, list]) -> None:
    """Show `rows` in the tables drawn from `source`.

    Emptied first: BokehJS redraws a table's rows only when their number changes, so a page of 100
    replacing another of 100 (Next, a new order, another machine's history) kept the old rows on screen.
    """
    source.data = empty
    source.data = rows


def message_div(name: str) -> Div:
    """A place for a message that takes no room while it has none (an empty Div is a line high)."""
    div = Div(
        text="",
        name=name,
        sizing_mode="stretch_width",
        margin=(0, 5, 0, 5),
        visible=False,
        stylesheets=[_MESSAGE_CSS],  # a Div draws in its own shadow root: the header's <style> stops at its edge
    )
    div.on_change("text", lambda _attr, _old, new: setattr(div, "visible", bool(new)))
    return div
