"""CSV exports, streamed: rows are read a page at a time (keyset on the index) and written a page at a time, so
a million-job export holds one page in memory."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlalchemy import Engine, text

from pipeline.reports.periods import Period

__all__ = ["JOB_COLUMNS", "PAGE", "csv_chunks", "period_jobs"]

PAGE = 5000
JOB_COLUMNS = (
    "backup_id", "vm_name", "repository_id", "backup_type", "job_type", "status", "created_at", "started_at",
    "completed_at", "duration_seconds", "bytes_transferred", "total_bytes", "avg_speed_bps", "error_message",
)  # fmt: skip
_PAGE = text(
    "SELECT id, vm_name, repository_id, backup_type, job_type, status, created_at, started_at, completed_at, "
    "TIMESTAMPDIFF(MICROSECOND, COALESCE(started_at, created_at), completed_at) / 1000000 AS seconds, "
    "bytes_transferred, total_bytes, avg_speed_bps, error_message FROM backup_jobs "
    "WHERE created_at >= :start AND created_at < :end "
    "AND (created_at > :after_at OR (created_at = :after_at AND id > :after_id)) "
    "ORDER BY created_at, id LIMIT :page"
)


def _text(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ") + "Z"
    return value


def period_jobs(engine: Engine, period: Period, page: int = PAGE) -> Iterator[tuple]:
    """The period's jobs in creation order, read `page` at a time with a fresh short query each."""
    after_at, after_id = datetime(1970, 1, 1), ""
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                _PAGE,
                {"start": period.start, "end": period.end, "after_at": after_at, "after_id": after_id, "page": page},
            ).all()
        for r in rows:
            yield (r.id, r.vm_name, r.repository_id, r.backup_type, r.job_type, r.status, r.created_at,
                   r.started_at, r.completed_at, None if r.seconds is None else float(r.seconds),
                   r.bytes_transferred, r.total_bytes, r.avg_speed_bps, r.error_message)  # fmt: skip
        if len(rows) < page:
            return
        after_at, after_id = rows[-1].created_at, rows[-1].id


def csv_chunks(header: Iterable[str], rows: Iterable[Iterable[object]], rows_per_chunk: int = 1000) -> Iterator[bytes]:
    """CSV (RFC 4180, UTF-8, times as ISO 8601 UTC) in chunks of `rows_per_chunk` rows, the header first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(list(header))
    for count, row in enumerate(rows, start=1):
        writer.writerow([_text(v) for v in row])
        if count % rows_per_chunk == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
