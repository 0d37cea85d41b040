"""PointBatcher: buffers encoded lines and writes them to InfluxDB in batches, retrying until accepted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from itertools import islice

from pipeline.tsdb.influx import AsyncInflux, InfluxError, InfluxUnavailable

__all__ = ["BufferFull", "PointBatcher"]

log = logging.getLogger(__name__)


class BufferFull(Exception):
    """The bounded buffer is full (InfluxDB has been unreachable for a while): refuse, do not drop."""


class PointBatcher:
    """Collects line-protocol lines; one writer task sends them by size or by time, in order.

    Every line added gets a sequence number; `written` is the number of lines InfluxDB has
    accepted, so a caller can wait for "everything I added so far" (a terminal update does).
    A failed write keeps its lines at the head of the queue and is retried with back-off,
    so nothing accepted is dropped; only a write InfluxDB rejects as malformed (4xx) is
    dropped, loudly, since sending it again cannot succeed.
    """

    def __init__(
        self,
        influx: AsyncInflux,
        *,
        rp: str | None,
        batch_size: int,
        flush_interval: float,
        max_buffered: int,
    ) -> None:
        self.influx = influx
        self.rp = rp
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffered = max_buffered
        self._lines: deque[str] = deque()
        self.added = 0
        self.written = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._watchers: list[tuple[int, Callable[[], None]]] = []
        self._task: asyncio.Task | None = None
        self._closing = False

    @property
    def backlog(self) -> int:
        return len(self._lines)

    @property
    def healthy(self) -> bool:
        return self.last_error is None

    def add(self, line: str) -> int:
        """Queue one line; returns its sequence number. Raises BufferFull instead of dropping."""
        if len(self._lines) >= self.max_buffered:
            raise BufferFull(f"{len(self._lines)} points are waiting for InfluxDB ({self.last_error})")
        self._lines.append(line)
        self.added += 1
        if len(self._lines) >= self.batch_size:
            self._wake.set()
        return self.added

    def on_written(self, seq: int, callback: Callable[[], None]) -> None:
        """Call `callback` once every line up to `seq` has been accepted by InfluxDB."""
        if self.written >= seq:
            callback()
        else:
            self._watchers.append((seq, callback))

    async def wait_written(self, seq: int, timeout: float) -> bool:
        """Flush now and wait until line `seq` is written; False if InfluxDB did not take it in time."""
        if self.written >= seq:
            return True
        self._wake.set()
        try:
            async with asyncio.timeout(timeout), self._progress:
                await self._progress.wait_for(lambda: self.written >= seq)
            return True
        except TimeoutError:
            return False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="point-batcher")

    async def stop(self, timeout: float = 30.0) -> None:
        """Write everything still queued (retrying for up to `timeout` seconds), then stop."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            log.error("shutting down with %d points InfluxDB did not accept: %s", len(self._lines), self.last_error)
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            if not self._lines and self._closing:
                return
            # Lines wait at most one flush interval; a full batch or a waiting caller wakes us early.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            await self._drain()

    async def _drain(self) -> None:
        backoff = 0.1
        while self._lines:
            count = min(len(self._lines), self.batch_size)
            body = "\n".join(islice(self._lines, count))
            try:
                await self.influx.write(body, rp=self.rp)
            except InfluxUnavailable as exc:
                self._note_error(str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except InfluxError as exc:
                # A malformed batch (should not happen: every value is validated and encoded by
                # the library). Retrying cannot help; say so loudly and move on.
                log.error("InfluxDB rejected %d points, dropping them: %s", count, exc)
                self.dropped += count
            for _ in range(count):
                self._lines.popleft()
            backoff = 0.1
            if self.last_error is not None:
                log.warning("InfluxDB accepts writes again; %d points still queued", len(self._lines))
                self.last_error = None
            self.written += count
            await self._notify()

    def _note_error(self, message: str) -> None:
        if self.last_error is None:
            log.warning("InfluxDB write failed, keeping %d points and retrying: %s", len(self._lines), message)
        self.last_error = message
        self.last_error_at = time.time()

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()
        if self._watchers:
            due = [cb for seq, cb in self._watchers if seq <= self.written]
            self._watchers = [(seq, cb) for seq, cb in self._watchers if seq > self.written]
            for callback in due:
                try:
                    callback()
                except Exception:  # a watcher's failure must not stop the writer
                    log.exception("callback after write failed")
