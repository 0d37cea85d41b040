"""Bring an existing job history under the pipeline: the job sheet's `backup_jobs` rows, from MySQL or CSV.

Each row is validated with the same bounds as the API's (ids, names, statuses, byte counts) and refused
with its reason otherwise; a finished job keeps its `performance_metrics` (the job sheet's fields,
checked, the chart bounded) or gets the summary of a job without points, so the rollup never has to
read InfluxDB for a history that has no raw points there. Ids already present are left as they are:
running the same import again changes nothing. The machines of the imported jobs are reconciled.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import Engine, MetaData, Table, create_engine, event, select

from pipeline.clock import utc_now
from pipeline.ingest.models import JOB_ID_PATTERN, MAX_BIGINT
from pipeline.jobs.store import JobStore
from pipeline.jobs.vocabulary import BACKUP_TYPES, JOB_STATUSES, JOB_TYPES, TERMINAL_STATUSES
from pipeline.reconcile.store import SummaryReconciler
from pipeline.rollup.downsample import chart_indices
from pipeline.rollup.metrics import JobTotals, SampleColumns, rollup_metrics

__all__ = ["HistoryImporter", "ImportReport", "Rejected", "csv_rows", "job_row", "mysql_rows"]

KEPT_REJECTIONS = 100
_JOB_ID = re.compile(JOB_ID_PATTERN)
_NAME = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029/\\]{1,255}")
_TEXT = re.compile(r"[^\x00-\x08\x0b-\x1f\x7f]*")
_MAX_METRICS_BYTES = 1_000_000


class Rejected(ValueError):
    """A source row that cannot be imported, with the reason a person can act on."""


class _ChartPoint(msgspec.Struct):
    t: int
    s: int
    p: float
    phase: str = ""


class _JobSheetSummary(msgspec.Struct):
    """The job sheet's performance_metrics: every field it defines, with its type."""

    duration_seconds: int
    snapshots_recorded: int
    peak_speed_bps: int
    avg_speed_bps: int
    min_speed_bps: int
    peak_speed_mbps: float
    avg_speed_mbps: float
    chart_data: list[_ChartPoint]


def _text(row: Mapping[str, Any], name: str, *, required: bool = False, limit: int = 255) -> str | None:
    value = row.get(name)
    if value is None or value == "":
        if required:
            raise Rejected(f"{name} is missing")
        return None
    value = str(value)
    if len(value) > limit or not _TEXT.fullmatch(value):
        raise Rejected(f"{name}: at most {limit} characters, no control characters")
    return value


def _name(row: Mapping[str, Any], name: str) -> str:
    value = _text(row, name, required=True)
    assert value is not None
    if not _NAME.fullmatch(value):
        raise Rejected(f"{name} {value[:80]!r}: 1-255 characters; no control characters, '/' or '\\'")
    return value


def _choice(row: Mapping[str, Any], names: tuple[str, ...], allowed: frozenset[str], default: str | None) -> str:
    value = next((row.get(n) for n in names if row.get(n) not in (None, "")), default)
    if value is None:
        raise Rejected(f"{names[0]} is missing")
    if value not in allowed:
        raise Rejected(f"{names[0]} {str(value)[:40]!r} is not one of {', '.join(sorted(allowed))}")
    return str(value)


def _moment(row: Mapping[str, Any], name: str, *, required: bool = False) -> datetime | None:
    value = row.get(name)
    if value is None or value == "":
        if required:
            raise Rejected(f"{name} is missing")
        return None
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise Rejected(
                f"{name} {str(value)[:40]!r} is not a date and time (ISO 8601, UTC unless it says)"
            ) from None
    # Naive times are UTC (what the job sheet's columns hold); others are converted.
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _count(row: Mapping[str, Any], name: str) -> int:
    value = row.get(name)
    if value is None or value == "":
        return 0
    try:
        number = int(value) if not isinstance(value, float | Decimal) or value == int(value) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not 0 <= number <= MAX_BIGINT:
        raise Rejected(f"{name} {str(value)[:40]!r}: a whole number from 0 to 2^53 - 1")
    return number


def _percent(row: Mapping[str, Any], name: str) -> float:
    value = row.get(name)
    if value is None or value == "":
        return 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 <= number <= 100.0:
        raise Rejected(f"{name} {str(value)[:40]!r}: a number from 0 to 100")
    return round(number, 2)


def _imported_metrics(raw: Any, status: str, sent: int, total: int, max_points: int) -> dict:
    if isinstance(raw, bytes | str):
        if len(raw) > _MAX_METRICS_BYTES:
            raise Rejected(f"performance_metrics is over {_MAX_METRICS_BYTES:,} bytes")
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise Rejected(f"performance_metrics is not JSON: {exc}") from None
    try:
        summary = msgspec.convert(raw, _JobSheetSummary, strict=False)
    except msgspec.ValidationError as exc:
        raise Rejected(f"performance_metrics: {exc}") from None
    chart = [msgspec.structs.asdict(p) for p in summary.chart_data]
    if len(chart) > max_points:  # the job sheet's charts are unbounded; ours keep a shape-preserving few
        keep = chart_indices([p["t"] for p in chart], [p["s"] for p in chart], max_points)
        chart = [chart[i] for i in keep]
    metrics = msgspec.structs.asdict(summary) | {"chart_data": chart}
    return metrics | {
        "avg_speed_method": "as_imported",
        "bytes_transferred": sent,
        "total_bytes": total,
        "final_status": status,
        "chart_points_source": len(summary.chart_data),
        "imported": True,
    }


def job_row(source: Mapping[str, Any], *, max_chart_points: int = 100, now: datetime | None = None) -> dict:
    """A source row as `backup_jobs` values; raises Rejected with the reason. Pure."""
    job_id = _text(source, "id", required=True)
    assert job_id is not None
    if not _JOB_ID.fullmatch(job_id):
        raise Rejected(f"id {job_id[:80]!r}: letters, digits, '.', '_', '-', at most 255")
    status = _choice(source, ("status",), JOB_STATUSES, None)
    sent, total = _count(source, "bytes_transferred"), _count(source, "total_bytes")
    row = {
        "id": job_id,
        "vm_name": _name(source, "vm_name"),
        "repository_id": _name(source, "repository_id"),
        "backup_type": _choice(source, ("backup_type", "type"), BACKUP_TYPES, None),
        "job_type": _choice(source, ("job_type",), JOB_TYPES, "backup"),
        "status": status,
        "created_at": _moment(source, "created_at", required=True),
        "started_at": _moment(source, "started_at"),
        "completed_at": _moment(source, "completed_at"),
        "last_telemetry_at": _moment(source, "last_telemetry_at"),
        "error_message": _text(source, "error_message", limit=65_535),
        "bytes_transferred": sent,
        "total_bytes": total,
        "transfer_speed_bps": _count(source, "transfer_speed_bps"),
        "progress_percent": _percent(source, "progress_percent"),
        "current_phase": _text(source, "current_phase", limit=100),
        "performance_metrics": None,
        "avg_speed_bps": None,
        "anomaly_count": None,
        "rolled_up_at": None,
        "purged_at": None,
        "ended_seen_at": None,
    }
    raw = source.get("performance_metrics")
    if status in TERMINAL_STATUSES:
        if raw not in (None, ""):
            metrics = _imported_metrics(raw, status, sent, total, max_chart_points)
        else:
            # No points anywhere: the summary the rollup gives a job without telemetry, made here.
            start, end = row["started_at"] or row["created_at"], row["completed_at"]
            metrics = rollup_metrics(
                SampleColumns(),
                totals=JobTotals(sent, total),
                final_status=status,
                started_at=start.replace(tzinfo=UTC).timestamp(),
                completed_at=None if end is None else end.replace(tzinfo=UTC).timestamp(),
                extra={"imported": True},
                max_chart_points=max_chart_points,
            )
        moment = now or utc_now()
        row |= {"performance_metrics": metrics, "avg_speed_bps": metrics["avg_speed_bps"]}
        row |= {"rolled_up_at": moment, "purged_at": moment, "ended_seen_at": moment}
    elif raw not in (None, ""):
        raise Rejected(f"performance_metrics on a {status} job: only finished jobs have a summary")
    return row


def csv_rows(path: Path) -> Iterator[dict]:
    """The rows of a CSV file with a header of `backup_jobs` column names, read as they are needed."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "id" not in reader.fieldnames:
            raise ValueError(f"{path}: the first line must name the columns (id, vm_name, status, ...)")
        yield from reader


def mysql_rows(url: str, table: str, *, batch_size: int = 1000) -> Iterator[dict]:
    """The rows of a MySQL/MariaDB table, in primary-key order, `batch_size` at a time (keyset paging)."""
    engine = create_engine(url, pool_size=1)

    @event.listens_for(engine, "connect")
    def _utc(dbapi_connection, _record) -> None:  # TIMESTAMP columns are read in UTC
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET time_zone = '+00:00'")

    try:
        # Reflected, so the table's name reaches SQL quoted by SQLAlchemy, never pasted in.
        source = Table(table, MetaData(), autoload_with=engine)
        if "id" not in source.c:
            raise ValueError(f"table {table!r} has no id column")
        after: str | None = None
        while True:
            query = select(source).order_by(source.c.id).limit(batch_size)
            if after is not None:
                query = query.where(source.c.id > after)
            with engine.connect() as conn:
                rows = [dict(r._mapping) for r in conn.execute(query)]
            yield from rows
            if len(rows) < batch_size:
                return
            after = rows[-1]["id"]
    finally:
        engine.dispose()


@dataclass
class ImportReport:
    """What an import read, brought in, left alone and refused."""

    read: int = 0
    imported: int = 0
    already_present: int = 0
    rejected: int = 0
    rejections: list[dict] = field(default_factory=list)
    machines_reconciled: int = 0
    machines_corrected: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class HistoryImporter:
    """Validates and inserts a history's rows in batches (one transaction each), then reconciles their machines."""

    def __init__(self, engine: Engine, jobs: JobStore, reconciler: SummaryReconciler, max_chart_points: int) -> None:
        self.engine = engine
        self.jobs = jobs
        self.reconciler = reconciler
        self.max_chart_points = max_chart_points

    def run(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        batch_size: int = 1000,
        dry_run: bool = False,
        progress: Callable[[ImportReport], None] | None = None,
    ) -> ImportReport:
        report = ImportReport(dry_run=dry_run)
        machines: set[str] = set()
        batch: list[dict] = []
        now = utc_now()
        for source in rows:
            report.read += 1
            try:
                batch.append(job_row(source, max_chart_points=self.max_chart_points, now=now))
            except Rejected as exc:
                report.rejected += 1
                if len(report.rejections) < KEPT_REJECTIONS:
                    where = source.get("id") or f"row {report.read}"
                    report.rejections.append({"row": report.read, "id": str(where)[:255], "reason": str(exc)})
            if len(batch) >= batch_size:
                machines |= self._insert(batch, report, dry_run)
                batch = []
                if progress is not None:
                    progress(report)
        if batch:
            machines |= self._insert(batch, report, dry_run)
        if machines and not dry_run:
            reconciled = self.reconciler.reconcile(sorted(machines))
            report.machines_reconciled = reconciled.machines_checked
            report.machines_corrected = reconciled.machines_corrected
        if progress is not None:
            progress(report)
        return report

    def _insert(self, batch: list[dict], report: ImportReport, dry_run: bool) -> set[str]:
        unique = list({r["id"]: r for r in batch}.values())  # a row repeated in the source counts once
        with self.engine.connect() as conn, conn.begin() as transaction:
            inserted = set(self.jobs.insert_imported(conn, unique))
            if dry_run:
                transaction.rollback()
        report.imported += len(inserted)
        report.already_present += len(batch) - len(inserted)
        return {r["vm_name"] for r in unique if r["id"] in inserted}
