"""The operators' dashboard: a Bokeh server application (`dashboards/app/`) that reads only from the HTTP API."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.settings import Settings

__all__ = ["APP_DIR", "AVAILABLE", "current_settings", "serve"]

AVAILABLE = True
APP_DIR = Path(__file__).resolve().parent / "app"

log = logging.getLogger("sendense.dashboard")

# Set by serve() so that app_hooks sees the settings the console script parsed; `bokeh serve dashboards/app`
# leaves it unset and the hooks load the settings from the environment instead.
_settings: Settings | None = None


def current_settings() -> Settings:
    """The settings serve() was given, else those of the environment."""
    if _settings is not None:
        return _settings
    from pipeline.settings import load_settings

    return load_settings()


def serve(settings: Settings, port: int | None = None) -> int:
    """Run the Bokeh server on 127.0.0.1:`port` (default settings.dashboard.port) until SIGINT/SIGTERM."""
    global _settings
    from bokeh.application import Application
    from bokeh.application.handlers import DirectoryHandler
    from bokeh.server.server import Server

    _settings = settings
    port = port or settings.dashboard.port
    application = Application(DirectoryHandler(filename=str(APP_DIR)))
    try:
        server = Server(
            {"/": application},
            port=port,
            address="127.0.0.1",
            # The browser's Origin must be listed, or Bokeh refuses the websocket the page runs on.
            allow_websocket_origin=[f"localhost:{port}", f"127.0.0.1:{port}"],
            # The dialog's API calls are fast, but a slow API must not drop sessions mid-click.
            unused_session_lifetime_milliseconds=60_000,
        )
    except OSError as exc:
        log.error("the dashboard cannot listen on 127.0.0.1:%d: %s (set SENDENSE_DASHBOARD_PORT)", port, exc)
        return 1
    server.start()
    loop = asyncio.get_event_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.io_loop.stop)
    log.info("dashboard on http://127.0.0.1:%d/ reading the API at %s", port, settings.dashboard.api_url)
    if not settings.dashboard.token:
        log.warning("SENDENSE_DASHBOARD_TOKEN is empty: the API will refuse the dashboard's requests")
    server.io_loop.start()
    server.stop()
    return 0
