"""Which failures are outages of a store (retry later, never a job's fault) and how to say so."""

from __future__ import annotations

from asyncmy import errors as asyncmy_errors
from sqlalchemy import exc as sa_exc

from pipeline.tsdb.influx import InfluxUnavailable

__all__ = ["StoreUnavailable", "describe_outage", "is_outage"]


class StoreUnavailable(Exception):
    """A store cannot take or answer a request now: the client gets 503 with Retry-After and retries."""

    def __init__(self, detail: str, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


_DB_OUTAGES = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
    # The group commit's own driver (asyncmy) raises these for the same conditions.
    asyncmy_errors.OperationalError,
    asyncmy_errors.InterfaceError,
)


def is_outage(exc: BaseException) -> bool:
    """True for a store that is down, unreachable, overloaded or hung; False for a bug or bad data.

    MySQL's OperationalError covers refused and lost connections, a server shutting down, too many
    connections and lock waits: all pass when the server is back. A broken pool checkout is one too.
    """
    if isinstance(exc, InfluxUnavailable | StoreUnavailable | TimeoutError | ConnectionError):
        return True
    return isinstance(exc, _DB_OUTAGES) or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)


def describe_outage(exc: BaseException) -> str:
    """A one-line reason a person can act on."""
    if isinstance(exc, StoreUnavailable):
        return exc.detail
    if isinstance(exc, InfluxUnavailable):
        return str(exc)
    if isinstance(exc, asyncmy_errors.MySQLError | OSError):
        return f"MySQL is unavailable ({type(exc).__name__}: {exc}); is it running? (infra/mariadb.sh start)"
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        return f"MySQL is unavailable ({type(exc.orig).__name__}: {exc.orig}); is it running? (infra/mariadb.sh start)"
    if isinstance(exc, sa_exc.SQLAlchemyError):
        return f"MySQL is unavailable ({type(exc).__name__}: {exc}); is it running? (infra/mariadb.sh start)"
    return f"{type(exc).__name__}: {exc}"
