"""Engine factory for the relational store: UTC sessions, pre-pinged pooled connections."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from pipeline.settings import MySQLSettings

__all__ = ["create_db_engine", "describe_url"]


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def create_db_engine(settings: MySQLSettings, *, pool_size: int | None = None) -> Engine:
    """A pooled engine whose connections all speak UTC, so DATETIME and TIMESTAMP columns agree."""
    engine = create_engine(
        settings.url,
        pool_size=pool_size or settings.pool_size,
        max_overflow=pool_size or settings.pool_size,
        pool_pre_ping=True,
        pool_recycle=3600,
    )

    @event.listens_for(engine, "connect")
    def _set_utc(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET time_zone = '+00:00'")

    return engine
