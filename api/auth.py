"""Bearer-token guards: agent tokens read and write, viewer tokens only read."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from pipeline.settings import ApiSettings

__all__ = ["require_agent", "require_reader"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sendense"'}


def _matches(token: str, allowed: tuple[str, ...]) -> bool:
    # Compare against every token in constant time so timing does not reveal a prefix.
    return any(hmac.compare_digest(token.encode(), candidate.encode()) for candidate in allowed)


def _role(connection: ASGIConnection) -> str:
    settings: ApiSettings = connection.app.state.settings.api
    if not settings.auth_enabled:
        return "agent"  # loopback-only mode, refused at start-up on any other address
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthorizedException("a bearer token is required (Authorization: Bearer <token>)", headers=_CHALLENGE)
    if _matches(token, settings.agent_tokens):
        return "agent"
    if _matches(token, settings.viewer_tokens):
        return "viewer"
    raise NotAuthorizedException("the bearer token is not valid", headers=_CHALLENGE)


# Async on purpose: Litestar runs a sync guard in a worker thread, a costly hop on every request.
async def require_reader(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    _role(connection)


async def require_agent(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    if _role(connection) != "agent":
        raise PermissionDeniedException("viewer tokens may only read; this needs an agent token")
