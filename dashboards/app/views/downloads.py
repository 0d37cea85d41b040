"""Download buttons: a click loads the dashboard's `/download/…` URL in a hidden frame.

A file the route streams becomes a download (Content-Disposition: attachment) and nothing else happens
in the page; a refusal (the API down, a report it does not make: HTTP 404) loads a small page into the
frame instead, whose sentence the button shows in its message box. The URL lives on the button (`tags`),
set by the view from what is chosen (period, search, range), so the browser never builds one itself.
"""

from __future__ import annotations

from collections.abc import Callable

from bokeh.models import Button, CustomJS, RadioButtonGroup

from dashboards.app.download_links import PERIOD_CHOICES, download_url
from dashboards.app.views.common import message_div

__all__ = ["DownloadButton", "PeriodChoice"]

# One frame per button, made on first click; the query's `_` makes a second click of the same URL load again.
_CLICK = """
let url = button.tags[0];
if (!url) return;
if (live != null && live_values[live.active] != null) {
  // The choice as the browser shows it now: the server's copy of the URL may be a moment behind a change.
  const u = new URL(url, window.location.href);
  u.searchParams.set(live_param, live_values[live.active]);
  url = u.pathname + u.search;
}
const id = 'sendense-download-' + button.name;
let frame = document.getElementById(id);
if (frame == null) {
  frame = document.createElement('iframe');
  frame.id = id;
  frame.name = id;
  frame.style.display = 'none';
  frame.addEventListener('load', () => {
    // A download loads no page into the frame: anything that does load is a refusal.
    let sentence = '';
    try {
      const page = frame.contentDocument;
      const p = page && page.getElementById('download-error');
      const text = page && page.body ? page.body.textContent.trim().slice(0, 200) : '';
      sentence = p ? p.textContent : (text ? 'The download did not start: ' + text : '');
    } catch (e) {
      sentence = '';
    }
    if (!sentence) return;
    const escaped = sentence.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
    message.text = '<div class="msg error download-error">' + escaped + '</div>';
  });
  document.body.appendChild(frame);
}
message.text = '<div class="msg info">' + note + '</div>';
setTimeout(() => { if (message.text.indexOf('download-error') < 0) message.text = ''; }, 8000);
frame.src = url + (url.indexOf('?') < 0 ? '?' : '&') + '_=' + Date.now();
"""


class PeriodChoice:
    """The period of a report, as buttons (24 h, 7 days, 30 days): `value` is the API's `period`."""

    def __init__(self, name: str, value: str = "7d") -> None:
        self.values = [value for value, _ in PERIOD_CHOICES]
        self.buttons = RadioButtonGroup(
            labels=[label for _, label in PERIOD_CHOICES], active=self.values.index(value), name=name,
            css_classes=[name],
        )  # fmt: skip

    @property
    def value(self) -> str:
        return self.values[self.buttons.active]

    def on_change(self, callback: Callable[[], None]) -> None:
        self.buttons.on_change("active", lambda _a, _o, _n: callback())


class DownloadButton:
    """A button and the message box under it; `point_at(**params)` says what its next click downloads."""

    def __init__(
        self, kind: str, label: str, name: str, *, width: int = 200, note: str = "", live: PeriodChoice | None = None,
    ) -> None:  # fmt: skip
        """`live`, a choice of period, is read in the browser at the click."""
        self.kind = kind
        self.button = Button(label=label, width=width, name=name, tags=[""], css_classes=[name])
        self.message = message_div(f"{name}-message")
        self.message.css_classes = [f"{name}-message"]
        wait = note or "The download starts in a moment."
        self.button.js_on_click(
            CustomJS(
                args={
                    "button": self.button,
                    "message": self.message,
                    "note": wait,
                    "live": None if live is None else live.buttons,
                    "live_param": "period",
                    "live_values": [] if live is None else live.values,
                },
                code=_CLICK,
            )
        )

    def point_at(self, **params: str | int | None) -> None:
        """The URL of the next click (the view calls it whenever a choice changes)."""
        self.button.tags = [download_url(self.kind, **params)]
