"""Engine factory for the relational store: UTC sessions, bounded waits, pre-pinged pooled connections."""

from __future__ import annotations

from asyncmy import create_pool
from asyncmy.pool import Pool
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from pipeline.settings import MySQLSettings

__all__ = ["create_async_pool", "create_db_engine", "describe_url"]


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def create_db_engine(settings: MySQLSettings, *, pool_size: int | None = None) -> Engine:
    """A pooled engine whose connections all speak UTC, so DATETIME and TIMESTAMP columns agree.

    Every wait is bounded (connect, each statement, each row lock), so a store that is down or hung
    turns into an error the caller can answer with 503 instead of a request that never ends.
    """
    engine = create_engine(
        settings.url,
        pool_size=pool_size or settings.pool_size,
        max_overflow=pool_size or settings.pool_size,
        pool_pre_ping=True,
        pool_recycle=3600,
        pool_timeout=settings.connect_timeout + 2,
        connect_args={
            "connect_timeout": settings.connect_timeout,
            "read_timeout": settings.query_timeout,
            "write_timeout": settings.query_timeout,
        },
    )
    lock_wait = int(settings.lock_wait_timeout)

    @event.listens_for(engine, "connect")
    def _set_session(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET time_zone = '+00:00'")
            cursor.execute("SET SESSION innodb_lock_wait_timeout = %s", (lock_wait,))

    return engine


async def create_async_pool(settings: MySQLSettings, *, size: int) -> Pool:
    """An asyncmy pool on the same database as `settings.url`, with the same session settings and
    bounded waits. Opens no connection until one is needed, so a process starts while MySQL is down."""
    url = make_url(settings.url)
    return await create_pool(
        minsize=0,
        maxsize=size,
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=url.database,
        charset=url.query.get("charset", "utf8mb4"),
        autocommit=False,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.query_timeout,
        init_command=f"SET time_zone = '+00:00', innodb_lock_wait_timeout = {int(settings.lock_wait_timeout)}",
    )
