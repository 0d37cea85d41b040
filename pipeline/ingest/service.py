"""TelemetryIngest: validated updates -> points and state changes -> one group commit -> an answer."""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass

from pipeline.ingest.committer import GroupCommitter
from pipeline.ingest.models import BatchUpdate, TelemetryUpdate
from pipeline.ingest.registry import JobEntry, JobRegistry
from pipeline.jobs.store import JobStore, Outcome, StateChange
from pipeline.jobs.vocabulary import TERMINAL_STATUSES
from pipeline.metrics import ACK_SECONDS, count_updates
from pipeline.outages import StoreUnavailable, describe_outage, is_outage
from pipeline.settings import Settings
from pipeline.tsdb.encoding import telemetry_line
from pipeline.tsdb.influx import AsyncInflux

__all__ = ["IngestError", "IngestResult", "TelemetryIngest"]


# Refusals by HTTP status, as the sendense_updates counter labels them.


class IngestError(Exception):
    """An update that cannot be accepted, with the HTTP status that says why."""

    def __init__(self, status: int, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


@dataclass(slots=True)
class IngestResult:
    status: int
    body: dict


def _loads(update: TelemetryUpdate) -> dict[str, float] | None:
    if update.stage_load is None:
        return None
    loads = {name: getattr(update.stage_load, name) for name in update.stage_load.__struct_fields__}
    return {name: value for name, value in loads.items() if value is not None} or None


class TelemetryIngest:
    """The ingest path. Every answer but a refusal waits for a group commit: a 2xx means durable."""

    def __init__(self, settings: Settings, store: JobStore, influx: AsyncInflux) -> None:
        self.settings = settings
        self.registry = JobRegistry(store.pool)
        self.committer = GroupCommitter(influx, store, settings.ingest, rp=settings.influx.raw_rp)
        self._last_ns = 0

    def _receive_ns(self) -> int:
        """The receive time of an update without a timestamp, strictly increasing in this process:
        two updates of one series stamped alike would be one point in InfluxDB."""
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        return self._last_ns

    async def start(self) -> None:
        self.committer.start()

    async def stop(self) -> None:
        """Graceful shutdown: updates already queued are committed and answered before the process exits."""
        await self.committer.stop()

    async def entry(self, job_type: str, job_id: str) -> JobEntry:
        entry = self.registry.get(job_id)
        if entry is None:
            try:
                loaded = await self.registry.load(job_id)
            except Exception as exc:
                if is_outage(exc):
                    raise self._unavailable(describe_outage(exc)) from exc
                raise
            if loaded is None:
                raise IngestError(404, f"job {job_id!r} does not exist; create it with POST /api/v1/backups")
            entry = self.registry.put(loaded)
        if entry.job_type != job_type:
            raise IngestError(409, f"job {job_id!r} is a {entry.job_type} job, not a {job_type} job")
        return entry

    def _unavailable(self, detail: str) -> IngestError:
        return IngestError(503, detail, retry_after=self.settings.ingest.retry_after)

    def _timestamp_ns(self, update: TelemetryUpdate, now_ns: int) -> int:
        if update.timestamp is None:
            return now_ns
        ts = update.timestamp
        ns = (int(ts.timestamp()) * 1_000_000 + ts.microsecond) * 1000
        if ns > now_ns + 300 * 10**9 or ns < now_ns - int(self.settings.ingest.max_timestamp_age * 1e9):
            raise IngestError(
                400,
                f"timestamp {ts.isoformat()} is outside the accepted window "
                f"(up to {self.settings.ingest.max_timestamp_age:.0f} s old, at most 300 s ahead)",
            )
        return ns

    def prepare(self, entry: JobEntry, update: TelemetryUpdate, now_ns: int) -> tuple[str, StateChange]:
        """The update's line-protocol point and its state change. Raises IngestError(409/400)."""
        terminal = update.disk_index is None and update.status in TERMINAL_STATUSES
        # Known to have finished: refused before its point is written, except the same end sent again
        # (a retry after a lost answer), which is answered 200 by the commit.
        if entry.finished and not (terminal and update.status == entry.status):
            raise IngestError(409, f"job {entry.job_id!r} has already finished ({entry.status})")
        ts_ns = self._timestamp_ns(update, now_ns)
        # The terminal point's phase is the final status: the last chart point says how the job ended.
        phase = update.status if terminal else update.current_phase
        line = telemetry_line(
            entry.key(update.disk_index),
            bytes_transferred=update.bytes_transferred,
            total_bytes=update.total_bytes,
            transfer_speed_bps=update.transfer_speed_bps,
            progress_percent=update.progress_percent,
            current_phase=phase,
            worker_count=update.worker_count,
            timestamp_ns=ts_ns,
            stage_load=_loads(update),
        )
        change = StateChange(
            job_id=entry.job_id,
            job_type=entry.job_type,
            at_us=ts_ns // 1000,
            status=update.status,
            disk_index=update.disk_index,
            bytes_transferred=update.bytes_transferred,
            total_bytes=update.total_bytes,
            transfer_speed_bps=update.transfer_speed_bps,
            progress_percent=update.progress_percent,
            current_phase=update.current_phase,
            worker_count=update.worker_count,
            error_message=update.error_message,
        )
        return line, change

    def _answer(self, entry: JobEntry, change: StateChange, outcome: Outcome) -> IngestResult:
        if outcome.code == 404:
            raise IngestError(404, f"job {entry.job_id!r} does not exist")
        if outcome.job_status in TERMINAL_STATUSES:
            self.registry.set_status(entry.job_id, outcome.job_status)
        if outcome.code == 409:
            raise IngestError(409, f"job {entry.job_id!r} has already finished ({outcome.job_status})")
        if outcome.code == 200:
            return IngestResult(200, {"job_id": entry.job_id, "status": outcome.job_status})
        return IngestResult(202, {"job_id": entry.job_id, "accepted": True})

    async def submit(self, job_type: str, job_id: str, update: TelemetryUpdate) -> IngestResult:
        """One update: 202 (running) or 200 (terminal) once durable; IngestError otherwise."""
        started = time.perf_counter()
        try:
            entry = await self.entry(job_type, job_id)
            line, change = self.prepare(entry, update, self._receive_ns())
            try:
                [outcome] = await self.committer.commit([line], [change])
            except StoreUnavailable as exc:
                raise IngestError(503, exc.detail, retry_after=exc.retry_after) from exc
            result = self._answer(entry, change, outcome)
        except IngestError as exc:
            count_updates(exc.status)
            raise
        count_updates(result.status)
        ACK_SECONDS.observe(time.perf_counter() - started)
        return result

    async def submit_batch(self, items: list[BatchUpdate]) -> dict:
        """Many updates in one group commit; each refused item is reported with its index."""
        rejected: list[dict] = []
        lines: list[str] = []
        changes: list[StateChange] = []
        entries: list[tuple[int, JobEntry]] = []
        for index, item in enumerate(items):
            if index % 500 == 499:
                # A 10,000-item batch takes ~0.1 s of CPU; let other requests in meanwhile.
                await asyncio.sleep(0)
            try:
                entry = await self.entry(item.job_type, item.job_id)
                line, change = self.prepare(entry, item, self._receive_ns())
            except IngestError as exc:
                if exc.status == 503:
                    raise
                rejected.append({"index": index, "status": exc.status, "detail": exc.detail})
                continue
            lines.append(line)
            changes.append(change)
            entries.append((index, entry))
        accepted = terminal = 0
        if changes:
            try:
                outcomes = await self.committer.commit(lines, changes)
            except StoreUnavailable as exc:
                raise IngestError(503, exc.detail, retry_after=exc.retry_after) from exc
            for (index, entry), change, outcome in zip(entries, changes, outcomes, strict=True):
                try:
                    result = self._answer(entry, change, outcome)
                    accepted += 1
                    terminal += result.status == 200
                except IngestError as exc:
                    rejected.append({"index": index, "status": exc.status, "detail": exc.detail})
        rejected.sort(key=lambda r: r["index"])
        count_updates(202, accepted - terminal)
        count_updates(200, terminal)
        for status, n in collections.Counter(r["status"] for r in rejected).items():
            count_updates(status, n)
        return {"accepted": accepted, "rejected": rejected}
