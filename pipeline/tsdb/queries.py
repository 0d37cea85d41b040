"""Every InfluxQL statement the pipeline sends, built in one place: `(text, bound parameters)`.

Values (job ids, times) are bound parameters (`$name`, sent as `params=`); identifiers (database,
retention policy, measurement) go through `quote_ident`; the only numbers written into the text are
ones computed here (bucket widths, milliseconds read back from InfluxDB). Nothing from a request
reaches the text.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pipeline.tsdb.encoding import STAGES, TELEMETRY
from pipeline.tsdb.influx import quote_ident, validate_duration

__all__ = [
    "Query",
    "chart_after",
    "chart_bounds",
    "chart_buckets",
    "chart_points",
    "create_database",
    "disk_curves",
    "disk_curves_live",
    "disk_points_after",
    "disk_stats",
    "drop_series",
    "drop_series_many",
    "job_aggregates",
    "job_buckets",
    "job_points_at",
    "job_samples",
    "job_totals",
    "retention_policy",
    "show_retention_policies",
    "show_series",
    "source",
    "stage_means",
]


class Query(NamedTuple):
    """One or more InfluxQL statements and their bound parameters."""

    text: str
    params: dict[str, Any] | None = None


def source(database: str, rp: str, measurement: str = TELEMETRY) -> str:
    """`"db"."rp"."measurement"`, quoted."""
    return f"{quote_ident(database)}.{quote_ident(rp)}.{quote_ident(measurement)}"


# A job's window (see pipeline/rollup/reader.py): its points lie between $start and $end (epoch ns).
_WINDOW = "job_id = $job_id AND time >= $start AND time <= $end"
_JOB_LEVEL = f"WHERE {_WINDOW} AND disk_index = ''"
_PER_DISK = f"WHERE {_WINDOW} AND disk_index != ''"


def _window(job_id: str, start_ns: int, end_ns: int) -> dict[str, Any]:
    return {"job_id": job_id, "start": start_ns, "end": end_ns}


# --- the rollup's reads ---------------------------------------------------------------------------


def job_samples(src: str, job_id: str, start_ns: int, end_ns: int) -> Query:
    """Every job-level point's speed, progress and phase (the curve's columns only)."""
    text = f"SELECT transfer_speed_bps, progress_percent, current_phase FROM {src} {_JOB_LEVEL}"
    return Query(text, _window(job_id, start_ns, end_ns))


_POINT = "progress_percent, current_phase"


def job_aggregates(src: str, job_id: str, start_ns: int, end_ns: int) -> Query:
    """Six statements over the job-level points: their count and the speed's integral; the first and
    last point (each selector alone, so that its row carries that point's time, progress and phase);
    the peak and the minimum non-zero speed with their times (the other fields of those two points
    cost a scan each: `job_points_at` reads them by time); the job's totals (`job_totals`)."""
    text = (
        f"SELECT count(transfer_speed_bps), integral(transfer_speed_bps, 1s) FROM {src} {_JOB_LEVEL}; "
        f"SELECT first(transfer_speed_bps), {_POINT} FROM {src} {_JOB_LEVEL}; "
        f"SELECT last(transfer_speed_bps), {_POINT} FROM {src} {_JOB_LEVEL}; "
        f"SELECT max(transfer_speed_bps) FROM {src} {_JOB_LEVEL}; "
        f"SELECT min(transfer_speed_bps) FROM {src} {_JOB_LEVEL} AND transfer_speed_bps != 0; "
        f"{job_totals(src, job_id, start_ns, end_ns).text}"
    )
    return Query(text, _window(job_id, start_ns, end_ns))


def job_buckets(src: str, job_id: str, start_ns: int, end_ns: int, width_ms: int) -> Query:
    """Four statements: the job's curve in buckets of `width_ms` from the window's start (mean speed,
    last progress and phase), how many distinct phases each bucket holds (where the phase may change),
    how many points carry a progress and a phase (all of them, when the API wrote them), and each
    stage's mean load (`stage_means`)."""
    group = f"GROUP BY time({int(width_ms)}ms, {(int(start_ns) // 10**6) % int(width_ms)}ms) fill(none)"
    text = (
        f"SELECT mean(transfer_speed_bps), last(progress_percent), last(current_phase) FROM {src} {_JOB_LEVEL} "
        f"{group}; "
        f"SELECT count(distinct(current_phase)) FROM {src} {_JOB_LEVEL} {group}; "
        f"SELECT count(progress_percent), count(current_phase) FROM {src} {_JOB_LEVEL}; "
        f"{stage_means(src, job_id, start_ns, end_ns).text}"
    )
    return Query(text, _window(job_id, start_ns, end_ns))


def job_points_at(src: str, job_id: str, start_ns: int, end_ns: int, ranges_ms: list[tuple[int, int]]) -> Query:
    """The job-level points (time, speed, progress, phase) in each given [from, to) millisecond range,
    one statement per range (InfluxQL's WHERE cannot OR time ranges together)."""
    statements = [
        f"SELECT transfer_speed_bps, {_POINT} FROM {src} {_JOB_LEVEL} AND time >= {int(lo)}ms AND time < {int(hi)}ms"
        for lo, hi in ranges_ms
    ]
    return Query("; ".join(statements), _window(job_id, start_ns, end_ns))


def job_totals(src: str, job_id: str, start_ns: int, end_ns: int) -> Query:
    """The last byte counts and the largest worker count of the job."""
    text = f"SELECT last(bytes_transferred), last(total_bytes), max(worker_count) FROM {src} {_JOB_LEVEL}"
    return Query(text, _window(job_id, start_ns, end_ns))


def stage_means(src: str, job_id: str, start_ns: int, end_ns: int) -> Query:
    """Each stage's mean load over the job-level points."""
    fields = ", ".join(f"mean(load_{stage})" for stage in STAGES)
    return Query(f"SELECT {fields} FROM {src} {_JOB_LEVEL}", _window(job_id, start_ns, end_ns))


def disk_curves(src: str, job_id: str, start_ns: int, end_ns: int, bucket_s: int) -> Query:
    """Each disk's mean speed and last progress per `bucket_s`-second bucket."""
    text = (
        f"SELECT mean(transfer_speed_bps), last(progress_percent) FROM {src} {_PER_DISK} "
        f"GROUP BY time({int(bucket_s)}s), disk_index fill(none)"
    )
    return Query(text, _window(job_id, start_ns, end_ns))


def disk_stats(src: str, job_id: str, start_ns: int, end_ns: int) -> Query:
    """Four statements per disk: count/peak/bytes, the speed's integral, its first and last point."""
    text = (
        f"SELECT count(transfer_speed_bps), max(transfer_speed_bps), last(bytes_transferred), "
        f"last(total_bytes) FROM {src} {_PER_DISK} GROUP BY disk_index; "
        f"SELECT integral(transfer_speed_bps, 1s) FROM {src} {_PER_DISK} GROUP BY disk_index; "
        f"SELECT first(transfer_speed_bps) FROM {src} {_PER_DISK} GROUP BY disk_index; "
        f"SELECT last(transfer_speed_bps) FROM {src} {_PER_DISK} GROUP BY disk_index"
    )
    return Query(text, _window(job_id, start_ns, end_ns))


# --- the live history's reads ---------------------------------------------------------------------


def chart_bounds(src: str, job_id: str, start_ns: int, end_ns: int) -> Query:
    """Four statements: how many job-level points, the first's and last's time, the last stage loads."""
    text = (
        f"SELECT count(transfer_speed_bps) FROM {src} {_JOB_LEVEL}; "
        f"SELECT first(transfer_speed_bps) FROM {src} {_JOB_LEVEL}; "
        f"SELECT last(transfer_speed_bps) FROM {src} {_JOB_LEVEL}; "
        f"SELECT {', '.join(f'last(load_{stage})' for stage in STAGES)} FROM {src} {_JOB_LEVEL}"
    )
    return Query(text, _window(job_id, start_ns, end_ns))


def chart_points(src: str, job_id: str, start_ns: int, end_ns: int) -> Query:
    """Every job-level point of a short job, for the live chart."""
    return job_samples(src, job_id, start_ns, end_ns)


def chart_buckets(
    src: str, job_id: str, start_ns: int, end_ns: int, first_ms: int, last_ms: int, bucket_s: int
) -> Query:
    """A long job's live chart in buckets of `bucket_s` seconds between its first and last point."""
    text = (
        f"SELECT mean(transfer_speed_bps), last(progress_percent), last(current_phase) FROM {src} "
        f"{_JOB_LEVEL} AND time >= {int(first_ms)}ms AND time <= {int(last_ms)}ms "
        f"GROUP BY time({int(bucket_s)}s) fill(none)"
    )
    return Query(text, _window(job_id, start_ns, end_ns))


def disk_curves_live(src: str, job_id: str, start_ns: int, end_ns: int, bucket_s: int) -> Query:
    """Two statements: each disk's curve in `bucket_s`-second buckets (as `disk_curves`) and each
    disk's last point (what a live curve is extended after)."""
    text = (
        f"{disk_curves(src, job_id, start_ns, end_ns, bucket_s).text}; "
        f"SELECT last(transfer_speed_bps) FROM {src} {_PER_DISK} GROUP BY disk_index"
    )
    return Query(text, _window(job_id, start_ns, end_ns))


def disk_points_after(
    src: str, job_id: str, start_ns: int, end_ns: int, disks: list[int], after_ns: list[int], limits: list[int]
) -> Query:
    """One statement per disk: its points after its own `after_ns` (at most its limit + 1, oldest
    first), what a live disk curve appends. Disk indexes and times are bound parameters too."""
    if not disks or not (len(disks) == len(after_ns) == len(limits)):
        raise ValueError("one after_ns and one limit for each disk, and at least one disk")
    params = _window(job_id, start_ns, end_ns)
    statements = []
    for i, (disk, after, limit) in enumerate(zip(disks, after_ns, limits, strict=True)):
        params[f"d{i}"], params[f"a{i}"] = str(int(disk)), int(after)
        statements.append(
            f"SELECT transfer_speed_bps, progress_percent FROM {src} WHERE {_WINDOW} AND disk_index = $d{i} "
            f"AND time > $a{i} LIMIT {int(limit) + 1}"
        )
    return Query("; ".join(statements), params)


def chart_after(src: str, job_id: str, start_ns: int, end_ns: int, after_ns: int, limit: int) -> Query:
    """The job-level points after `after_ns` (at most `limit`, oldest first) with their stage loads:
    what a live chart appends."""
    loads = ", ".join(f"load_{stage}" for stage in STAGES)
    text = (
        f"SELECT transfer_speed_bps, progress_percent, current_phase, {loads} FROM {src} {_JOB_LEVEL} "
        f"AND time > $after LIMIT {int(limit)}"
    )
    return Query(text, _window(job_id, start_ns, end_ns) | {"after": int(after_ns)})


# --- the purge --------------------------------------------------------------------------------------


def drop_series(job_id: str) -> Query:
    """Remove a job's raw series, index entries included."""
    return Query(f"DROP SERIES FROM {quote_ident(TELEMETRY)} WHERE job_id = $job_id", {"job_id": job_id})


def drop_series_many(job_ids: list[str]) -> Query:
    """Remove several jobs' raw series in one statement: InfluxDB then walks its shards once, not once a job."""
    if not job_ids:
        raise ValueError("no job ids to drop")
    condition = " OR ".join(f"job_id = $j{i}" for i in range(len(job_ids)))
    params = {f"j{i}": job_id for i, job_id in enumerate(job_ids)}
    return Query(f"DROP SERIES FROM {quote_ident(TELEMETRY)} WHERE {condition}", params)


def show_series() -> Query:
    """The `job_telemetry` series that exist now (SHOW TAG VALUES keeps listing dropped ones on 1.6)."""
    return Query(f"SHOW SERIES FROM {quote_ident(TELEMETRY)}")


# --- the schema -------------------------------------------------------------------------------------


def create_database(database: str) -> Query:
    return Query(f"CREATE DATABASE {quote_ident(database)}")


def show_retention_policies(database: str) -> Query:
    return Query(f"SHOW RETENTION POLICIES ON {quote_ident(database)}")


def retention_policy(database: str, name: str, duration: str, *, default: bool, exists: bool) -> Query:
    """CREATE (or ALTER, when it exists) a retention policy; the duration is checked first."""
    verb = "ALTER" if exists else "CREATE"
    text = (
        f"{verb} RETENTION POLICY {quote_ident(name)} ON {quote_ident(database)} "
        f"DURATION {validate_duration(duration)} REPLICATION 1{' DEFAULT' if default else ''}"
    )
    return Query(text)
