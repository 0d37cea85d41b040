"""JobRegistry: a per-process cache of what never changes about a job (its series key), and its status.

Only a cache: the status every acknowledgement reports is read in the group commit's transaction.
A job known here to have finished is refused at once, without writing a point.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from pipeline.db.tables import backup_jobs
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
    """Bounded LRU cache of jobs, filled from `backup_jobs` on first sight of a job id."""

    def __init__(self, engine: Engine, *, max_entries: int = 200_000) -> None:
        self.engine = engine
        self.max_entries = max_entries
        self._jobs: OrderedDict[str, JobEntry] = OrderedDict()

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
        while len(self._jobs) > self.max_entries:
            self._jobs.popitem(last=False)
        return entry

    def set_status(self, job_id: str, status: str) -> None:
        entry = self._jobs.get(job_id)
        if entry is not None:
            entry.status = status
