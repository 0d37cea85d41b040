"""Alembic environment: the URL comes from the pipeline's settings, the metadata from pipeline.db."""

from logging.config import fileConfig

from alembic import context

from pipeline.db.engine import create_db_engine
from pipeline.db.tables import metadata
from pipeline.settings import MySQLSettings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name)

target_metadata = metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.attributes.get("url") or MySQLSettings().url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.attributes.get("url") or MySQLSettings().url
    engine = create_db_engine(MySQLSettings(url=url), pool_size=1)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
