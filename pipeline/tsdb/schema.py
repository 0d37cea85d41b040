"""Creates the InfluxDB database and its two retention policies (idempotent)."""

from __future__ import annotations

import dataclasses

from pipeline.settings import InfluxSettings
from pipeline.tsdb import queries
from pipeline.tsdb.influx import SyncInflux

__all__ = ["ensure_influx_schema"]


def ensure_influx_schema(settings: InfluxSettings) -> list[str]:
    """Create the database, the raw-telemetry policy (the default) and the long summary policy.

    Existing policies are altered to the configured durations, so changing a setting and running
    `sendense migrate` again applies it. Returns what was done, for the log.
    """
    if settings.admin_username:
        # Databases and retention policies are an administrator's to create; the pipeline's own user
        # (ALL on the database) writes, reads and drops series only.
        settings = dataclasses.replace(settings, username=settings.admin_username, password=settings.admin_password)
    client = SyncInflux(settings)
    try:
        client.query(*queries.create_database(settings.database), db=False)
        existing = {
            row[0]
            for result in client.query(*queries.show_retention_policies(settings.database), db=False)
            for series in result.get("series", [])
            for row in series.get("values", [])
        }
        done = []
        for name, duration, default in (
            (settings.raw_rp, settings.raw_retention, True),
            (settings.summary_rp, settings.summary_retention, False),
        ):
            statement = queries.retention_policy(
                settings.database, name, duration, default=default, exists=name in existing
            )
            client.query(*statement, db=False)
            action = "altered" if name in existing else "created"
            done.append(f"{action} retention policy {name} ({duration}{', default' if default else ''})")
        return done
    finally:
        client.close()
