"""Bearer-token access: agent tokens read and write, viewer tokens only read, health and docs are open."""

from __future__ import annotations

import hashlib

from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.types import ASGIApp, Receive, Scope, Send

from pipeline.settings import ApiSettings

__all__ = ["BearerAuth"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sendense"'}
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_OPEN_PREFIXES = ("/api/v1/health/", "/api/v1/schema")


def _digest(token: str | bytes) -> bytes:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


class BearerAuth:
    """ASGI middleware checking every request once, before routing work is done.

    Tokens are compared as SHA-256 digests in a set: the lookup time does not depend on how much
    of a token matches. A middleware rather than route guards: Litestar copies the handler for
    every guard call, a measurable cost on the telemetry hot path.
    """

    def __init__(self, app: ASGIApp, settings: ApiSettings) -> None:
        self.app = app
        self.enabled = settings.auth_enabled
        self.agents = frozenset(_digest(t) for t in settings.agent_tokens)
        self.viewers = frozenset(_digest(t) for t in settings.viewer_tokens)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.enabled and scope["type"] == "http" and not scope["path"].startswith(_OPEN_PREFIXES):
            self._authorize(scope)
        await self.app(scope, receive, send)

    def _authorize(self, scope: Scope) -> None:
        header = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            raise NotAuthorizedException(
                "a bearer token is required (Authorization: Bearer <token>)", headers=_CHALLENGE
            )
        digest = _digest(token.strip())
        if digest in self.agents:
            return
        if digest not in self.viewers:
            raise NotAuthorizedException("the bearer token is not valid", headers=_CHALLENGE)
        if scope["method"] not in _READ_METHODS:
            raise PermissionDeniedException("viewer tokens may only read; this needs an agent token")
