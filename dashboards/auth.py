"""The dashboard's login: Bokeh's auth-provider hooks, scrypt-hashed passwords, signed cookies, two roles.

Credentials come from configuration (`SENDENSE_DASHBOARD_USERS`: `name:role:hash` or, as before the
roles, `name:hash` for a viewer; made with `sendense hash-password`); only hashes are ever stored. Every
user reads the API through the dashboard's viewer token; a logged-in operator's acknowledgements and
silences go with the dashboard's operator token, in the operator's name.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
from html import escape
from typing import Literal, NamedTuple

from bokeh.server.auth_provider import AuthProvider
from tornado.httputil import HTTPServerRequest
from tornado.web import RequestHandler, decode_signed_value

__all__ = [
    "COOKIE",
    "ROLES",
    "Account",
    "DashboardLogin",
    "DashboardUser",
    "Role",
    "hash_password",
    "is_valid_name",
    "parse_users",
    "verify_password",
]

# The name predates the roles; kept so that logins made before them stay valid.
COOKIE = "sendense_operator"
Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
# What the API takes as `by` (api/alert_schemas.py ACTOR_PATTERN), less what the setting's format uses.
_NAME = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029:,]{1,255}")
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


def is_valid_name(name: str) -> bool:
    """1-255 characters, none of them a control character, ":" or "," (the setting's separators)."""
    return bool(_NAME.fullmatch(name))


class Account(NamedTuple):
    """A configured user: the password's hash and what the user may do."""

    password_hash: str
    role: Role


class DashboardUser(NamedTuple):
    """Who a session belongs to."""

    name: str
    role: Role

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


def parse_users(raw: tuple[str, ...]) -> dict[str, Account]:
    """`name:role:hash` entries (`name:hash`: a viewer) → {name: Account}; raises ValueError naming a bad entry."""
    users: dict[str, Account] = {}
    for entry in raw:
        name, _, rest = entry.partition(":")
        role, sep, stored = rest.partition(":")
        if not sep:  # the form before roles: name:hash, a viewer as every user then was
            role, stored = "viewer", rest
        if not is_valid_name(name) or not stored.startswith("scrypt$") or stored.count("$") != 5:
            raise ValueError(
                f"SENDENSE_DASHBOARD_USERS entry {name[:40] or entry[:20]!r} is not name:role:scrypt$… "
                "(or name:scrypt$… for a viewer); make one with `sendense hash-password NAME --role ROLE`"
            )
        if role not in ROLES:
            raise ValueError(f"SENDENSE_DASHBOARD_USERS entry {name!r}: role {role!r} is not viewer or operator")
        if name in users:
            raise ValueError(f"SENDENSE_DASHBOARD_USERS names {name!r} twice")
        users[name] = Account(stored, role)  # type: ignore[arg-type]  # checked against ROLES above
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


class DashboardLogin(AuthProvider):
    """Bokeh's hooks: who is logged in (a signed cookie), where to log in and out; and a request's user."""

    def __init__(self, users: dict[str, Account], cookie_secret: str, *, secure_cookies: bool = False) -> None:
        self.users = users
        self.cookie_secret = cookie_secret
        self.secure_cookies = secure_cookies
        super().__init__()

    @property
    def get_user(self):
        def user(handler: RequestHandler) -> str | None:
            name = handler.get_secure_cookie(COOKIE, max_age_days=1)
            return name.decode() if name and name.decode() in self.users else None

        return user

    def session_user(self, name: object) -> DashboardUser | None:
        """The user a session's (signed) token names, with the role configured now; None for anyone else."""
        account = self.users.get(name) if isinstance(name, str) else None
        return None if account is None else DashboardUser(name, account.role)  # type: ignore[arg-type]

    def user_of(self, request: HTTPServerRequest) -> DashboardUser | None:
        """The user whose login cookie `request` carries (checked as `get_user` does), with the role configured now."""
        morsel = request.cookies.get(COOKIE)
        if morsel is None:
            return None
        name = decode_signed_value(self.cookie_secret, COOKIE, morsel.value, max_age_days=1)
        return self.session_user(name.decode()) if name else None

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
                account = auth.users.get(name)
                stored = account.password_hash if account else None
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
