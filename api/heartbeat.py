"""ApiHeartbeat: every few seconds, this API process tells `pipeline_heartbeats` whether its group commits fail.

The pipeline_unhealthy rule reads it: InfluxDB or MySQL failing group commits, or the commit queue full,
for longer than its threshold in any live process. Runs in the app's lifespan, off the request path
(the committer only sets and clears times as commits succeed and fail). A heartbeat that cannot be
written (MySQL down: the evaluation cannot run either) is logged at debug level and tried again next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import UTC, datetime

from anyio import to_thread

from pipeline.alerts.heartbeats import HeartbeatStore
from pipeline.ingest.committer import CommitStats

__all__ = ["ApiHeartbeat", "commit_health"]

log = logging.getLogger("sendense.api")


def _naive(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


def commit_health(stats: CommitStats) -> dict:
    """What a heartbeat says of these group commits: since when each part has been failing (None: it is not)."""
    failing = (stats.influx_failing_since, stats.mysql_failing_since, stats.queue_full_since)
    return {
        "influx_failing_since": _naive(stats.influx_failing_since),
        "mysql_failing_since": _naive(stats.mysql_failing_since),
        "queue_full_since": _naive(stats.queue_full_since),
        "detail": stats.last_error if any(t is not None for t in failing) else None,
    }


class ApiHeartbeat:
    """A background task beating every `interval` seconds until stopped."""

    def __init__(self, store: HeartbeatStore, stats: CommitStats, interval: float) -> None:
        self.store = store
        self.stats = stats
        self.interval = interval
        self.process = f"api:{socket.gethostname()}:{os.getpid()}"
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="api-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def beat(self) -> None:
        health = commit_health(self.stats)
        try:
            await to_thread.run_sync(lambda: self.store.beat(self.process, **health))
        except Exception as exc:  # the store is down or slow: the next beat tries again
            log.debug("heartbeat not written: %s", exc)

    async def _run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.interval)
