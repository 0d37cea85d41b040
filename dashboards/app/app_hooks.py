"""Server lifecycle hooks: one API client for all sessions, created when the server loads."""

from __future__ import annotations

import asyncio
import contextlib

from bokeh.application.application import ServerContext

from dashboards import current_settings
from dashboards.app.client import DashboardApi

__all__ = ["on_server_loaded", "on_server_unloaded"]


def on_server_loaded(server_context: ServerContext) -> None:
    settings = current_settings().dashboard
    # Sessions reach it as curdoc().session_context.server_context.sendense_api (one connection pool).
    server_context.sendense_api = DashboardApi(settings.api_url, settings.token)  # type: ignore[attr-defined]


def on_server_unloaded(server_context: ServerContext) -> None:
    api = getattr(server_context, "sendense_api", None)
    if api is not None:
        with contextlib.suppress(RuntimeError):  # no loop left to close it on: the process is ending
            asyncio.get_event_loop().create_task(api.aclose())
