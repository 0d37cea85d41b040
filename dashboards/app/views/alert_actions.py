"""The alert being looked at, and for a logged-in operator the forms that acknowledge and silence it.

The forms are Bokeh widgets: a click reaches the server over the page's session websocket, which the
server opened only for a logged-in browser whose Origin it allows (dashboards.serve), with a session
token no other site can read. That is the cross-site-request protection of these forms; they add no
HTTP endpoint. Viewers' and anonymous pages get no form at all (not hidden widgets: none is made), and
every action checks the session's role again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from html import escape

from bokeh.layouts import column, row
from bokeh.models import Button, CheckboxGroup, Div, Select, TextInput

from dashboards.app.alert_shaping import SILENCE_DURATIONS, alert_detail_text, silence_body
from dashboards.app.client import ApiError, DashboardApi
from dashboards.app.shaping import format_time
from dashboards.app.views.common import CARD_CSS, message_html
from dashboards.auth import DashboardUser

__all__ = ["AlertActions", "actions_note"]

_MACHINE, _RULE = "This machine", "This rule"


def actions_note(user: DashboardUser | None, can_write: bool) -> str:
    """Why this page offers no acknowledge and silence buttons ("" when it does)."""
    if user is None:
        return (
            "Acknowledging and silencing need an operator's login: the dashboard's users and their roles are "
            "set in SENDENSE_DASHBOARD_USERS (docs/dashboard.md)."
        )
    if not user.is_operator:
        return f"You are logged in as {user.name}, a viewer: only operators acknowledge and silence alerts."
    if not can_write:
        return "The dashboard has no operator token (SENDENSE_DASHBOARD_OPERATOR_TOKEN): it cannot act for you."
    return ""


def _message(text: str, kind: str = "info") -> str:
    # Each Div draws in its own shadow root: the message box's style goes with it.
    return CARD_CSS + message_html(text, kind)


class AlertActions:
    """Shows one alert; `on_changed` is awaited after an acknowledgement or silence so that lists re-read."""

    def __init__(
        self,
        api: DashboardApi,
        user: DashboardUser | None,
        schedule: Callable[[Callable[[], Awaitable[None]]], None],
        on_changed: Callable[[], Awaitable[None]],
        name: str,
    ) -> None:
        self.api = api
        self.user = user
        self.schedule = schedule
        self.on_changed = on_changed
        self.alert: dict | None = None
        self.detail = Div(text="", name=f"{name}-detail", sizing_mode="stretch_width")
        self.status = Div(text="", name=f"{name}-status", sizing_mode="stretch_width")
        note = actions_note(user, api.can_write)
        self.can_act = not note
        children = [self.detail]
        if self.can_act:
            self.comment = TextInput(
                placeholder="Comment (optional)", max_length=1000, width=520, name=f"{name}-comment"
            )
            self.acknowledge = Button(label="Acknowledge", button_type="primary", width=130, name=f"{name}-ack")
            self.scope = CheckboxGroup(
                labels=[_MACHINE, _RULE], active=[0, 1], inline=True, margin=(12, 5, 5, 5), name=f"{name}-scope"
            )
            self.duration = Select(options=SILENCE_DURATIONS, value="14400", width=110, name=f"{name}-duration")
            self.reason = TextInput(placeholder="Reason (required)", max_length=1000, width=300, name=f"{name}-reason")
            self.silence = Button(label="Silence", button_type="warning", width=110, name=f"{name}-silence")
            label = "<b style='display:inline-block;width:95px;padding-top:6px'>{}</b>"
            children += [
                row(Div(text=label.format("Acknowledge")), self.comment, self.acknowledge),
                row(Div(text=label.format("Silence")), self.scope, self.duration, self.reason, self.silence),
            ]
            self.acknowledge.on_click(lambda: self.schedule(self._acknowledge))
            self.silence.on_click(lambda: self.schedule(self._silence))
        else:
            children.append(Div(text=_message(note), name=f"{name}-note", sizing_mode="stretch_width"))
        children.append(self.status)
        self.layout = column(*children, visible=False, sizing_mode="stretch_width", name=f"{name}-actions")

    def show(self, alert: dict | None) -> None:
        """Show `alert` (None: nothing chosen); the forms are cleared only when another alert is chosen."""
        other = alert is None or self.alert is None or int(alert["id"]) != int(self.alert["id"])
        self.alert = alert
        self.layout.visible = alert is not None
        if alert is None:
            return
        heading, story = alert_detail_text(alert, datetime.now(UTC))
        self.detail.text = (
            "<div class='alert-detail' style='background:#f7f7f7;border:1px solid #e0e0e0;border-radius:4px;"
            "padding:6px 10px'>"
            f"<b>{escape(heading)}</b><br>{escape(story)}</div>"
        )
        if other:
            self.status.text = ""
            if self.can_act:
                self.comment.value = self.comment.value_input = ""
                self.reason.value = self.reason.value_input = ""
                has_machine = bool(alert.get("vm_name"))
                self.scope.labels = [_MACHINE, _RULE] if has_machine else [_RULE]
                self.scope.active = [0, 1] if has_machine else [0]

    def _may_act(self) -> bool:
        # The form exists only for operators; this is the second look, at the moment of acting.
        return self.can_act and self.user is not None and self.user.is_operator and self.alert is not None

    async def _acknowledge(self) -> None:
        if not self._may_act():
            return
        assert self.alert is not None and self.user is not None
        comment = (self.comment.value_input or self.comment.value or "").strip()
        try:
            alert = await self.api.acknowledge(int(self.alert["id"]), self.user.name, comment)
        except ApiError as exc:
            self.status.text = _message(str(exc), "error")
            return
        self.show(alert)
        self.comment.value = self.comment.value_input = ""
        self.status.text = _message(f"Acknowledged by {self.user.name}.")
        await self.on_changed()

    async def _silence(self) -> None:
        if not self._may_act():
            return
        assert self.alert is not None and self.user is not None
        chosen = {self.scope.labels[i] for i in self.scope.active if i < len(self.scope.labels)}
        try:
            body = silence_body(
                self.alert,
                machine=_MACHINE in chosen,
                rule=_RULE in chosen,
                duration_seconds=int(self.duration.value),
                reason=self.reason.value_input or self.reason.value or "",
                by=self.user.name,
            )
            silence = await self.api.silence(body)
        except (ValueError, ApiError) as exc:
            self.status.text = _message(str(exc), "error")
            return
        what = " on ".join(
            part
            for part in (
                f"rule {silence['rule']}" if silence.get("rule") else "",
                f"machine {silence['vm_name']}" if silence.get("vm_name") else "",
            )
            if part
        )
        self.status.text = _message(f"Silenced {what} until {format_time(silence.get('ends_at'))} UTC.")
        self.reason.value = self.reason.value_input = ""
        await self.on_changed()
