"""JobRegistry: a per-process cache of what never changes about a job (its series key), and its status.

Only a cache: the status every acknowledgement reports is read in the group commit's transaction.
A job known here to have finished is refused at once, without writing a point.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

from asyncmy.pool import Pool

from pipeline.jobs.vocabulary import TERMINAL_STATUSES
from pipeline.tsdb.encoding import TELEMETRY, series_key

__all__ = ["JobEntry", "JobRegistry"]


@dataclass(slots=True)
class JobEntry:
    """A job as the ingest path sees it; `keys` caches the encoded series key per disk."""

    job_id: str
    job_type: str
    vm_name: str
    repository_id: str
    status: str
    keys: dict[int | None, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def key(self, disk_index: int | None) -> str:
        key = self.keys.get(disk_index)
        if key is None:
            tags = {
                "job_id": self.job_id,
                "job_type": self.job_type,
                "vm_name": self.vm_name,
                "repository_id": self.repository_id,
            }
            if disk_index is not None:
                tags["disk_index"] = str(disk_index)
            key = self.keys[disk_index] = series_key(TELEMETRY, tags)
        return key


class JobRegistry:
    """Bounded LRU cache of jobs, filled from `backup_jobs` on first sight of a job id.

    Misses are loaded together: every job id asked for while a load is being prepared joins one
    `SELECT ... WHERE id IN (...)` on the event loop (asyncmy), so a process restarted under a fleet
    of running jobs fills its cache in a few queries rather than one thread hop per job.
    """

    def __init__(self, pool: Pool, *, max_entries: int = 200_000) -> None:
        self.pool = pool
        self.max_entries = max_entries
        self._jobs: OrderedDict[str, JobEntry] = OrderedDict()
        self._waiting: dict[str, asyncio.Future[JobEntry | None]] = {}
        self._loader: asyncio.Task | None = None

    def get(self, job_id: str) -> JobEntry | None:
        return self._jobs.get(job_id)

    async def load(self, job_id: str) -> JobEntry | None:
        """The job, from the database (None if it does not exist); raises what the database raised."""
        future = self._waiting.get(job_id)
        if future is None:
            future = self._waiting[job_id] = asyncio.get_running_loop().create_future()
            if self._loader is None:
                self._loader = asyncio.get_running_loop().create_task(self._load_waiting())
        return await asyncio.shield(future)

    async def _load_waiting(self) -> None:
        await asyncio.sleep(0)  # let every request already running ask for its job first
        waiting, self._waiting, self._loader = self._waiting, {}, None
        ids = list(waiting)
        try:
            found: dict[str, JobEntry] = {}
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                async with self.pool.acquire() as conn, conn.cursor() as cur:
                    await cur.execute(_SELECT.format(", ".join(["%s"] * len(chunk))), chunk)
                    for row in await cur.fetchall():
                        found[row[0]] = self.put(JobEntry(*row))
        except Exception as exc:
            for future in waiting.values():
                if not future.done():
                    future.set_exception(exc)
                    future.add_done_callback(lambda f: f.exception())  # read, so it is never "unretrieved"
            return
        for job_id, future in waiting.items():
            if not future.done():
                future.set_result(found.get(job_id))

    def put(self, entry: JobEntry) -> JobEntry:
        existing = self._jobs.get(entry.job_id)
        if existing is not None:
            return existing
        self._jobs[entry.job_id] = entry
        while len(self._jobs) > self.max_entries:
            self._jobs.popitem(last=False)
        return entry

    def set_status(self, job_id: str, status: str) -> None:
        entry = self._jobs.get(job_id)
        if entry is not None:
            entry.status = status


_SELECT = "SELECT id, job_type, vm_name, repository_id, status FROM backup_jobs WHERE id IN ({})"
