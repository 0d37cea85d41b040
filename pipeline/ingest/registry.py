"""JobRegistry: what the ingest path knows of each job, so an update needs no database round trip."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from pipeline.db.tables import backup_jobs
from pipeline.ingest.models import TERMINAL_STATUSES
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
    finishing: bool = False
    keys: dict[int | None, str] = field(default_factory=dict)
    last_mirror: dict[int | None, float] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.finishing or self.status in TERMINAL_STATUSES

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

    def mirror_due(self, disk_index: int | None, interval: float, now: float) -> bool:
        """True at most once per `interval` per job and disk: the snapshot cadence."""
        last = self.last_mirror.get(disk_index)
        if last is not None and now - last < interval:
            return False
        self.last_mirror[disk_index] = now
        return True


class JobRegistry:
    """Bounded cache of jobs, filled from `backup_jobs` on first sight of a job id.

    Statuses are refreshed by the state coalescer after every flush, so a job the reaper
    failed in another process stops accepting updates within one flush interval.
    """

    def __init__(self, engine: Engine, *, max_entries: int = 200_000) -> None:
        self.engine = engine
        self.max_entries = max_entries
        self._jobs: OrderedDict[str, JobEntry] = OrderedDict()
        self._finished_at: dict[str, float] = {}

    def get(self, job_id: str) -> JobEntry | None:
        return self._jobs.get(job_id)

    def load(self, job_id: str) -> JobEntry | None:
        """Read one job from the database (blocking: call it in a thread)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    backup_jobs.c.id,
                    backup_jobs.c.job_type,
                    backup_jobs.c.vm_name,
                    backup_jobs.c.repository_id,
                    backup_jobs.c.status,
                ).where(backup_jobs.c.id == job_id)
            ).first()
        if row is None:
            return None
        return JobEntry(row.id, row.job_type, row.vm_name, row.repository_id, row.status)

    def put(self, entry: JobEntry) -> JobEntry:
        existing = self._jobs.get(entry.job_id)
        if existing is not None:
            return existing
        self._jobs[entry.job_id] = entry
        self._evict()
        return entry

    def set_status(self, job_id: str, status: str) -> None:
        entry = self._jobs.get(job_id)
        if entry is None:
            return
        entry.status = status
        if status in TERMINAL_STATUSES:
            self._finished_at.setdefault(job_id, time.monotonic())

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._finished_at.pop(job_id, None)

    def _evict(self) -> None:
        # Finished jobs go first (a reload answers 409 just as well), then the oldest entries.
        if len(self._jobs) <= self.max_entries:
            return
        for job_id in sorted(self._finished_at, key=self._finished_at.get)[: len(self._jobs) - self.max_entries]:
            self.forget(job_id)
        while len(self._jobs) > self.max_entries:
            job_id, _ = self._jobs.popitem(last=False)
            self._finished_at.pop(job_id, None)
