"""Bearer-token access by role: viewers read; agents also create jobs and send telemetry; operators also
acknowledge and silence alerts, change alert rules, register machines and set their RPO. Health and docs are open."""

from __future__ import annotations

import hashlib
from typing import Literal

from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.types import ASGIApp, Receive, Scope, Send

from pipeline.settings import ApiSettings

__all__ = ["OPERATOR_ONLY", "BearerAuth", "Role", "required_role"]

Role = Literal["viewer", "agent", "operator"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sendense"'}
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_OPEN_PREFIXES = ("/api/v1/health/", "/api/v1/schema")

OPERATOR_ONLY: dict[str, tuple[str, ...]] = {
    "POST": ("/api/v1/alerts/", "/api/v1/silences"),
    "PUT": ("/api/v1/alert-rules", "/api/v1/machines/"),
    "DELETE": ("/api/v1/silences/",),
}
"""Writes only operators may make, by method and path prefix: acknowledging an alert, creating and ending
silences, changing alert rules, registering a machine and setting its RPO. Every other write is an agent's
(creating jobs, telemetry). An agent token lives on every protected host, so it may change no objective,
rule or silence; tests/unit/test_auth_roles.py checks this table against every route of the app."""


def required_role(method: str, path: str) -> Role | None:
    """The role a request needs (None: open to anyone)."""
    if path.startswith(_OPEN_PREFIXES):
        return None
    if method in _READ_METHODS:
        return "viewer"
    return "operator" if path.startswith(OPERATOR_ONLY.get(method, ())) else "agent"


def _digest(token: str | bytes) -> bytes:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


class BearerAuth:
    """ASGI middleware checking every request once, before routing work is done.

    Tokens are compared as SHA-256 digests in a dict: the lookup time does not depend on how much of a
    token matches. A middleware rather than route guards: Litestar copies the handler for every guard
    call, a measurable cost on the telemetry hot path, where an agent's update costs one dict lookup and
    one `startswith` of the operator table more than before.
    """

    def __init__(self, app: ASGIApp, settings: ApiSettings) -> None:
        self.app = app
        self.enabled = settings.auth_enabled
        # A token listed under several roles gets the last one here; infra/run.sh makes distinct ones.
        self.roles: dict[bytes, Role] = {
            **{_digest(t): "viewer" for t in settings.viewer_tokens},
            **{_digest(t): "agent" for t in settings.agent_tokens},
            **{_digest(t): "operator" for t in settings.operator_tokens},
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.enabled and scope["type"] == "http" and not scope["path"].startswith(_OPEN_PREFIXES):
            self.authorize(scope)
        await self.app(scope, receive, send)

    def authorize(self, scope: Scope) -> None:
        """Raises NotAuthorizedException (401) or PermissionDeniedException (403) unless the request may proceed."""
        header = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            raise NotAuthorizedException(
                "a bearer token is required (Authorization: Bearer <token>)", headers=_CHALLENGE
            )
        role = self.roles.get(_digest(token.strip()))
        if role is None:
            raise NotAuthorizedException("the bearer token is not valid", headers=_CHALLENGE)
        method = scope["method"]
        if method in _READ_METHODS:
            return
        if scope["path"].startswith(OPERATOR_ONLY.get(method, ())):
            if role == "operator":
                return
            raise PermissionDeniedException(f"{role} tokens may not do this; it needs an operator token")
        if role == "agent":
            return
        if role == "viewer":
            raise PermissionDeniedException("viewer tokens may only read; this needs an agent token")
        raise PermissionDeniedException(
            "operator tokens may not create jobs or send telemetry; this needs an agent token"
        )
