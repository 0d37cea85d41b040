"""Operators' login for the dashboard: Bokeh's auth-provider hooks, scrypt-hashed passwords, signed cookies.

Credentials come from configuration (`SENDENSE_DASHBOARD_USERS`: `name:hash` pairs made with
`sendense hash-password`); only hashes are ever stored. A logged-in session carries only viewer
rights: the dashboard reads the API with its viewer token, whoever is logged in.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from html import escape

from bokeh.server.auth_provider import AuthProvider
from tornado.web import RequestHandler

__all__ = ["OperatorAuth", "hash_password", "parse_users", "verify_password"]

COOKIE = "sendense_operator"
# scrypt's cost: about 50 ms and 16 MiB per check here, dear enough to guess against offline.
_N, _R, _P = 2**14, 8, 1
_FAILED_LOGIN_DELAY = 0.5


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash` (base64): what SENDENSE_DASHBOARD_USERS holds for a user."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a `hash_password` result (compared in constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def parse_users(raw: tuple[str, ...]) -> dict[str, str]:
    """`name:hash` entries → {name: hash}; raises ValueError naming a malformed entry."""
    users = {}
    for entry in raw:
        name, sep, stored = entry.partition(":")
        if not sep or not name or not stored.startswith("scrypt$") or stored.count("$") != 5:
            raise ValueError(
                f"SENDENSE_DASHBOARD_USERS entry {name or entry[:20]!r} is not name:scrypt$…; "
                "make one with `sendense hash-password`"
            )
        users[name] = stored
    return users


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Sendense — sign in</title>
<style>body{{font-family:sans-serif;background:#f4f6f8}}form{{width:320px;margin:12vh auto;padding:24px;
background:#fff;border:1px solid #ddd;border-radius:8px}}input{{width:100%;padding:8px;margin:6px 0 12px;
box-sizing:border-box}}button{{padding:8px 16px}}.err{{color:#8a1c1c;background:#fdecea;padding:8px}}</style>
</head><body><form method="post" action="{action}"><h2>Sendense dashboard</h2>{error}
<label>User<input name="username" autocomplete="username" autofocus></label>
<label>Password<input name="password" type="password" autocomplete="current-password"></label>
{xsrf}<button type="submit">Sign in</button></form></body></html>"""


class OperatorAuth(AuthProvider):
    """Bokeh's hooks: who is logged in (a signed cookie), where to log in and out."""

    def __init__(self, users: dict[str, str], *, secure_cookies: bool = False) -> None:
        self.users = users
        self.secure_cookies = secure_cookies
        super().__init__()

    @property
    def get_user(self):
        def user(handler: RequestHandler) -> str | None:
            name = handler.get_secure_cookie(COOKIE, max_age_days=1)
            return name.decode() if name and name.decode() in self.users else None

        return user

    @property
    def login_url(self) -> str:
        return "/login"

    @property
    def login_handler(self) -> type[RequestHandler]:
        auth = self

        class LoginHandler(RequestHandler):
            def get(self) -> None:
                self._page("")

            async def post(self) -> None:
                name = self.get_argument("username", "")
                password = self.get_argument("password", "")
                stored = auth.users.get(name)
                # The hash is computed even for an unknown name, so timing does not tell names apart.
                ok = verify_password(password, stored or hash_password("", salt=b"x" * 16)) and stored is not None
                if not ok:
                    await asyncio.sleep(_FAILED_LOGIN_DELAY)
                    self.set_status(401)
                    self._page("The user name or the password is wrong.")
                    return
                self.set_secure_cookie(
                    COOKIE, name, expires_days=1, httponly=True, samesite="Strict", secure=auth.secure_cookies
                )
                target = self.get_argument("next", "/")
                # Only back into this site: "//host" or "https://…" would send the operator elsewhere.
                self.redirect(target if target.startswith("/") and not target.startswith("//") else "/")

            def _page(self, error: str) -> None:
                self.set_header("Content-Type", "text/html; charset=utf-8")
                self.set_header("Cache-Control", "no-store")
                message = f'<p class="err">{escape(error)}</p>' if error else ""
                self.write(_PAGE.format(action="/login", error=message, xsrf=self.xsrf_form_html()))

        return LoginHandler

    @property
    def logout_url(self) -> str:
        return "/logout"

    @property
    def logout_handler(self) -> type[RequestHandler]:
        class LogoutHandler(RequestHandler):
            def get(self) -> None:
                self.clear_cookie(COOKIE)
                self.redirect("/login")

        return LogoutHandler
