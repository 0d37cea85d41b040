"""Server lifecycle hooks: one API client for all sessions, the login, and each session's user in its token."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from bokeh.application.application import ServerContext
from tornado.httputil import HTTPServerRequest

from dashboards import current_login, current_settings
from dashboards.app.client import DashboardApi

__all__ = ["SESSION_USER", "on_server_loaded", "on_server_unloaded", "process_request"]

SESSION_USER = "sendense_user"
"""The key of the logged-in user's name in a session's token payload."""


def on_server_loaded(server_context: ServerContext) -> None:
    settings = current_settings().dashboard
    # Sessions reach them as curdoc().session_context.server_context.sendense_api (one connection pool)
    # and .sendense_login (None: nobody logs in, so nobody acts as an operator).
    server_context.sendense_api = DashboardApi(  # type: ignore[attr-defined]
        settings.api_url, settings.token, operator_token=settings.operator_token
    )
    server_context.sendense_login = current_login()  # type: ignore[attr-defined]


def process_request(request: HTTPServerRequest) -> dict[str, Any]:
    """Runs for the page's request, once its login is checked: the user's name goes into the session's token
    (signed by the server, see dashboards.serve), where the session reads it."""
    login = current_login()
    user = login.user_of(request) if login is not None else None
    return {SESSION_USER: user.name} if user is not None else {}


def on_server_unloaded(server_context: ServerContext) -> None:
    api = getattr(server_context, "sendense_api", None)
    if api is not None:
        with contextlib.suppress(RuntimeError):  # no loop left to close it on: the process is ending
            asyncio.get_event_loop().create_task(api.aclose())
