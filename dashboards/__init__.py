"""The operators' dashboard: a Bokeh server application (`dashboards/app/`) that reads only from the HTTP API."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import signal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dashboards.auth import DashboardLogin
    from pipeline.settings import Settings

__all__ = ["APP_DIR", "AVAILABLE", "current_login", "current_settings", "serve"]

AVAILABLE = True
APP_DIR = Path(__file__).resolve().parent / "app"

log = logging.getLogger("sendense.dashboard")

# Set by serve() so that app_hooks sees the settings the console script parsed; `bokeh serve dashboards/app`
# leaves it unset and the hooks load the settings from the environment instead.
_settings: Settings | None = None
_login: DashboardLogin | None = None


def current_login() -> DashboardLogin | None:
    """The login serve() set up (None: no users configured, or the app not started by serve())."""
    return _login


def current_settings() -> Settings:
    """The settings serve() was given, else those of the environment."""
    if _settings is not None:
        return _settings
    from pipeline.settings import load_settings

    return load_settings()


def serve(settings: Settings, port: int | None = None, host: str | None = None) -> int:
    """Run the Bokeh server on `host`:`port` (defaults from settings) until SIGINT/SIGTERM.

    With users configured (SENDENSE_DASHBOARD_USERS) every page needs a login; without, the dashboard
    refuses to listen on anything but loopback, and nobody can acknowledge or silence from it.
    """
    global _settings, _login
    from bokeh.application import Application
    from bokeh.application.handlers import DirectoryHandler
    from bokeh.server.server import Server

    from dashboards.auth import COOKIE, DashboardLogin, parse_users
    from dashboards.downloads import download_patterns
    from pipeline.settings import is_loopback

    _settings = settings
    dash = settings.dashboard
    port = port or dash.port
    host = host or dash.host
    try:
        users = parse_users(dash.users)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    if not users and not is_loopback(host):
        log.error(
            "refusing to serve the dashboard on %s without a login: set SENDENSE_DASHBOARD_USERS (name:role:hash, "
            "from `sendense hash-password NAME --role viewer|operator`), or listen on 127.0.0.1",
            host,
        )
        return 2
    login: dict = {}
    if users:
        secret = dash.cookie_secret
        if not secret:
            secret = secrets.token_urlsafe(32)
            log.warning("SENDENSE_DASHBOARD_COOKIE_SECRET is empty: logins last until this process stops")
        _login = DashboardLogin(users, secret, secure_cookies=dash.secure_cookies)
        login = {
            "auth_provider": _login,
            "cookie_secret": secret,
            "xsrf_cookies": True,
            # A session's user rides in its token (app_hooks.process_request): signed, so that no browser
            # can make up a token naming someone else. The login cookie stays out of the token, which the
            # page holds where scripts can read it (the cookie itself is HttpOnly).
            "sign_sessions": True,
            "secret_key": hmac.new(secret.encode(), b"sendense bokeh session tokens", hashlib.sha256).digest(),
            "exclude_cookies": [COOKIE],
            "exclude_headers": ["Cookie"],
        }
        operators = sum(1 for account in users.values() if account.role == "operator")
        if operators and not dash.operator_token:
            log.warning(
                "SENDENSE_DASHBOARD_OPERATOR_TOKEN is empty: the %d operator(s) can read but not acknowledge or "
                "silence alerts from the dashboard",
                operators,
            )
    elif dash.operator_token:
        log.info("SENDENSE_DASHBOARD_OPERATOR_TOKEN is unused: only logged-in operators act, and no users are set")
    # The browser's Origin must be listed, or Bokeh refuses the websocket the page runs on.
    origins = [f"localhost:{port}", f"127.0.0.1:{port}", f"{host}:{port}", *dash.origins]
    application = Application(DirectoryHandler(filename=str(APP_DIR)))
    try:
        server = Server(
            {"/": application},
            port=port,
            address=host,
            allow_websocket_origin=origins,
            # The dialog's API calls are fast, but a slow API must not drop sessions mid-click.
            unused_session_lifetime_milliseconds=60_000,
            # Reports and CSVs, fetched with the dashboard's token (the browser has none), behind the same login.
            extra_patterns=download_patterns(dash.api_url, dash.token, _login),
            **login,
        )
    except OSError as exc:
        log.error("the dashboard cannot listen on %s:%d: %s (set SENDENSE_DASHBOARD_PORT)", host, port, exc)
        return 1
    server.start()
    loop = asyncio.get_event_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.io_loop.stop)
    log.info(
        "dashboard on http://%s:%d/ reading the API at %s (%s)",
        host,
        port,
        dash.api_url,
        f"login required, {len(users)} user(s)" if users else "no login: loopback only, read-only",
    )
    if not dash.token:
        log.warning("SENDENSE_DASHBOARD_TOKEN is empty: the API will refuse the dashboard's requests")
    server.io_loop.start()
    server.stop()
    return 0
