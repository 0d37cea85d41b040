"""The backup-window timeline: every job in a time range as a bar, grouped by repository, with the jobs running
at once and the estate's summed transfer speed in buckets below.

Bounded work: the range is at most 7 days; jobs are read from one range of `ix_backup_jobs_created_at`
(created up to `LONGEST_JOB` before the range, so a job that began earlier and runs into it is a bar too);
at most `MAX_BARS` bars are returned (the longest first when there are more, and the count of those left
out); the two series have at most `BUCKETS` points however many jobs there are. A job's speed is its
average (bytes ÷ duration) over its bar, or the current speed of a running job.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, text

from pipeline.clock import aware

__all__ = ["BUCKETS", "LONGEST_JOB", "MAX_BARS", "MAX_RANGE", "bars_and_series", "timeline"]

MAX_RANGE = timedelta(days=7)
LONGEST_JOB = timedelta(days=1)
MAX_BARS = 20_000
BUCKETS = 288

_JOBS = text(
    "SELECT id, vm_name, repository_id, backup_type, job_type, status, created_at, started_at, completed_at, "
    "bytes_transferred, transfer_speed_bps FROM backup_jobs WHERE created_at >= :earliest AND created_at < :end "
    "AND (:repository IS NULL OR repository_id = :repository)"
)


def bars_and_series(rows, start: datetime, end: datetime, now: datetime, buckets: int = BUCKETS) -> dict:
    """Pure: bars of the jobs overlapping [start, end) and the per-bucket concurrency and summed speed."""
    bars = []
    for r in rows:
        begin = r.started_at or r.created_at
        finish = r.completed_at or (now if r.status in ("pending", "running") else begin)
        if finish < start or begin >= end:
            continue
        seconds = max((finish - begin).total_seconds(), 0.0)
        if r.completed_at is None:
            speed = float(r.transfer_speed_bps or 0)
        else:
            speed = float(r.bytes_transferred or 0) / seconds if seconds > 0 else 0.0
        bars.append((r, begin, finish, speed))
    step = (end - start) / buckets
    # Differences, then running sums: O(bars + buckets) however long the bars are.
    running_diff = [0] * (buckets + 1)
    speed_diff = [0.0] * (buckets + 1)
    for _, begin, finish, speed in bars:
        first = max(0, int((begin - start) / step))
        last = min(buckets - 1, int((min(finish, end) - start) / step))
        running_diff[first] += 1
        running_diff[last + 1] -= 1
        speed_diff[first] += speed
        speed_diff[last + 1] -= speed
    running, speeds = [], []
    count, total = 0, 0.0
    for i in range(buckets):
        count += running_diff[i]
        total += speed_diff[i]
        running.append(count)
        speeds.append(max(total, 0.0))
    left_out = max(0, len(bars) - MAX_BARS)
    if left_out:
        bars.sort(key=lambda b: b[2] - b[1], reverse=True)
        bars = bars[:MAX_BARS]
    bars.sort(key=lambda b: (b[0].repository_id, b[1], b[0].id))
    return {
        "bars": [
            {
                "backup_id": r.id,
                "vm_name": r.vm_name,
                "repository_id": r.repository_id,
                "type": r.backup_type,
                "job_type": r.job_type,
                "status": r.status,
                "start": aware(begin),
                "end": aware(finish),
                "avg_speed_bps": round(speed),
            }
            for r, begin, finish, speed in bars
        ],
        "bars_left_out": left_out,
        "buckets": [
            {"start": aware(start + i * step), "running": running[i], "speed_bps": round(speeds[i])}
            for i in range(buckets)
        ],
    }


def timeline(engine: Engine, start: datetime, end: datetime, now: datetime, repository: str | None = None) -> dict:
    """The timeline of [start, end) (naive UTC, at most MAX_RANGE), optionally of one repository."""
    if end <= start or end - start > MAX_RANGE:
        raise ValueError("the timeline's range must be positive and at most 7 days")
    params = {"earliest": start - LONGEST_JOB, "end": end, "repository": repository}
    with engine.connect() as conn:
        rows = conn.execute(_JOBS, params).all()
    return {"start": aware(start), "end": aware(end), **bars_and_series(rows, start, end, now)}
