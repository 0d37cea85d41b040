"""SummaryReconciler: recomputes machines' summaries from `backup_jobs` in short batches; owns the runs table.

A batch locks its machines' rows first, then reads their jobs' aggregates in one consistent snapshot.
The job store changes a machine's counters only in the transaction that changes its job (locking the
job, then the machine), so a job ending meanwhile either committed before the lock (and is counted
here) or waits for it (and adds itself to the corrected counters afterwards): nothing is counted twice
or lost, and no table is locked for more than one batch of machines.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, insert, select, text
from sqlalchemy.exc import OperationalError

from pipeline.clock import utc_now
from pipeline.db.tables import summary_reconcile_runs
from pipeline.insight.recent_runs import recent_runs
from pipeline.insight.risk import HistoryRisk, assess_history
from pipeline.jobs.store import JobStore
from pipeline.jobs.vocabulary import COMPLETED
from pipeline.reconcile.plan import BatchPlan, plan_batch
from pipeline.reconcile.vocabulary import MachineSummary, ReconcileMode, ReconcileReport

__all__ = ["DriftState", "SummaryReconciler"]

log = logging.getLogger(__name__)

_NAMES = bindparam("names", expanding=True)
_LOCK = text(
    "SELECT vm_name, total_jobs, successful, failed, cancelled, protected_bytes, last_job_id, last_job_at, "
    "last_success_at, risk_logit, risk_factors, risk_assessed_at FROM machines WHERE vm_name IN :names "
    "ORDER BY vm_name FOR UPDATE"
).bindparams(_NAMES)
_AGGREGATE = text(
    "SELECT vm_name, COUNT(*) AS total_jobs, SUM(status = :completed) AS successful, "
    "SUM(status = 'failed') AS failed, SUM(status = 'cancelled') AS cancelled, "
    "SUM(CASE WHEN status = :completed THEN bytes_transferred ELSE 0 END) AS protected_bytes, "
    "MAX(created_at) AS last_job_at, MAX(CASE WHEN status = :completed THEN completed_at END) AS last_success_at, "
    "MIN(created_at) AS first_job_at FROM backup_jobs WHERE vm_name IN :names GROUP BY vm_name"
).bindparams(_NAMES, completed=COMPLETED)
# The latest job of each machine, by the order the job store keeps (created_at, then id).
_LATEST = text(
    "SELECT vm_name, id, repository_id FROM (SELECT vm_name, id, repository_id, ROW_NUMBER() OVER "
    "(PARTITION BY vm_name ORDER BY created_at DESC, id DESC) AS n FROM backup_jobs WHERE vm_name IN :names) "
    "AS ranked WHERE n = 1"
).bindparams(_NAMES)
# Machines with jobs marked after `since` (the index on (external_change_at, vm_name) covers it).
_CHANGED = text(
    "SELECT DISTINCT vm_name FROM backup_jobs WHERE external_change_at > :since AND vm_name > :after "
    "ORDER BY vm_name LIMIT :limit"
)
_EVERY = text(
    "SELECT vm_name FROM ((SELECT DISTINCT vm_name FROM backup_jobs WHERE vm_name > :after ORDER BY vm_name "
    "LIMIT :limit) UNION (SELECT vm_name FROM machines WHERE vm_name > :after ORDER BY vm_name LIMIT :limit)) "
    "AS names ORDER BY vm_name LIMIT :limit"
)
_MARKED = text("SELECT COUNT(*) FROM (SELECT 1 FROM backup_jobs WHERE external_change_at > :since LIMIT :cap) AS m")
_EPOCH = datetime(1970, 1, 1, 0, 0, 1)
_COUNT_CAP = 10_000
_BATCHES_PER_PAGE = 25
# Deadlock, lock wait timeout: the batch's transaction is tried again.
_RETRIED = (1213, 1205)
_ATTEMPTS = 3


def _summary(row) -> MachineSummary:
    return MachineSummary(
        total_jobs=int(row.total_jobs or 0),
        successful=int(row.successful or 0),
        failed=int(row.failed or 0),
        cancelled=int(row.cancelled or 0),
        protected_bytes=int(row.protected_bytes or 0),
        last_job_id=getattr(row, "last_job_id", None),
        last_job_at=row.last_job_at,
        last_success_at=row.last_success_at,
    )


def _risk_due(row) -> bool:
    """A machine whose failure risk the job store may not have written since its newest job: never
    assessed, or assessed before that job was created (a scheduler that stopped between a rollup's
    commit and the assessment; a weight change waits for the machine's next rollup)."""
    return row.risk_assessed_at is None or (row.last_job_at is not None and row.last_job_at > row.risk_assessed_at)


def _risk_changes(rows: Mapping[str, object], runs: Mapping[str, list]) -> dict[str, HistoryRisk]:
    """The machines whose failure risk, assessed from `runs`, is not what their row (None: new) holds."""
    changed = {}
    for vm, row in rows.items():
        assessed = assess_history(runs.get(vm, []))
        kept = None if row is None else HistoryRisk.stored(row.risk_logit, row.risk_factors)
        same = (
            kept is not None
            and math.isclose(kept.logit, assessed.logit, abs_tol=1e-9)
            and kept.as_dict() == assessed.as_dict()
        )
        if not same:
            changed[vm] = assessed
    return changed


class DriftState:
    """What readiness reports: the last run, and how many jobs were changed outside the job store since."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def read(self) -> dict:
        with self.engine.connect() as conn:
            last = conn.execute(
                select(summary_reconcile_runs).order_by(summary_reconcile_runs.c.id.desc()).limit(1)
            ).first()
            since = last.watermark if last is not None else _EPOCH
            marked = conn.execute(_MARKED, {"since": since, "cap": _COUNT_CAP}).scalar_one()
        return {
            "jobs_changed_outside": int(marked),
            "last_run": None
            if last is None
            else {
                "mode": last.mode,
                "finished_at": last.finished_at,
                "machines_checked": last.machines_checked,
                "machines_corrected": last.machines_corrected,
            },
        }


class SummaryReconciler:
    """Recompute `machines`' summaries from their jobs: those marked as changed, or all of them."""

    def __init__(self, engine: Engine, jobs: JobStore, *, batch_size: int = 200, overlap: float = 600.0) -> None:
        self.engine = engine
        self.jobs = jobs
        self.batch_size = batch_size
        self.overlap = overlap
        """Seconds the next `changed` run looks back past this run's start: a job changed by a transaction
        that began before it and committed after is still seen."""

    def run(
        self,
        mode: ReconcileMode = "changed",
        *,
        dry_run: bool = False,
        progress: Callable[[ReconcileReport], None] | None = None,
    ) -> ReconcileReport:
        """One run over the machines `mode` names; recorded (unless `dry_run`) for the next run and readiness."""
        with self.engine.connect() as conn:
            started = conn.execute(text("SELECT UTC_TIMESTAMP(6)")).scalar_one()
            since = None if mode == "all" else self._since(conn)
        report = ReconcileReport(mode, started, dry_run=dry_run, since=since)
        names = self._every() if mode == "all" else self._changed(since or _EPOCH)
        for batch in names:
            # Every job a `changed` run visits was changed outside: its machine's risk is read again. A full
            # run reads it again only where the job store may not have (see _risk_due).
            self._batch(batch, report, dry_run, every=mode == "changed")
            if progress is not None:
                progress(report)
        report.finished_at = utc_now()
        if not dry_run:
            self._record(report)
        if report.corrections_total:
            log.warning(
                "reconcile (%s) corrected %d machines (%d fields); first: %s",
                mode,
                report.machines_corrected,
                report.corrections_total,
                report.corrections[0].as_dict(),
            )
        return report

    def reconcile(self, names: Sequence[str], *, dry_run: bool = False) -> ReconcileReport:
        """These machines only (after an import, say); not recorded as a run."""
        report = ReconcileReport("changed", utc_now(), dry_run=dry_run)
        ordered = sorted(set(names))
        for i in range(0, len(ordered), self.batch_size):
            self._batch(ordered[i : i + self.batch_size], report, dry_run, every=True)
        report.finished_at = utc_now()
        return report

    def _since(self, conn: Connection) -> datetime | None:
        last = conn.execute(select(summary_reconcile_runs.c.watermark).order_by(summary_reconcile_runs.c.id.desc()))
        watermark = last.scalar()
        return None if watermark is None else watermark - timedelta(seconds=self.overlap)

    def _pages(self, query, params: dict) -> Iterator[list[str]]:
        """Names in order, read a page (many batches) at a time, yielded a batch at a time."""
        after, page = "", self.batch_size * _BATCHES_PER_PAGE
        while True:
            with self.engine.connect() as conn:
                names = list(conn.execute(query, {**params, "after": after, "limit": page}).scalars())
            for i in range(0, len(names), self.batch_size):
                yield names[i : i + self.batch_size]
            if len(names) < page:
                return
            after = names[-1]

    def _changed(self, since: datetime) -> Iterator[list[str]]:
        return self._pages(_CHANGED, {"since": since})

    def _every(self) -> Iterator[list[str]]:
        return self._pages(_EVERY, {})

    def _batch(self, names: list[str], report: ReconcileReport, dry_run: bool, *, every: bool) -> None:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                plan, reassessed = self._plan_and_write(names, dry_run, every)
                break
            except OperationalError as exc:
                # A deadlock with a job being created for a machine new to this batch: try the batch again.
                if exc.orig is None or exc.orig.args[0] not in _RETRIED or attempt == _ATTEMPTS:
                    raise
                log.info("reconcile batch retried after MySQL error %s", exc.orig.args[0])
        report.add(plan.corrections, len(names), plan.created)
        report.risk_reassessed += reassessed

    def _plan_and_write(self, names: list[str], dry_run: bool, every: bool) -> tuple[BatchPlan, int]:
        # REPEATABLE READ: the aggregate and the latest jobs come from one snapshot, taken after the locks.
        with self.engine.connect() as conn, conn.begin() as transaction:
            stored_rows = conn.execute(_LOCK, {"names": names}).all()
            stored = {r.vm_name: _summary(r) for r in stored_rows}
            aggregates = {r.vm_name: r for r in conn.execute(_AGGREGATE, {"names": names})}
            latest = {r.vm_name: r for r in conn.execute(_LATEST, {"names": names})}
            computed = {
                vm: MachineSummary(**{**_summary(row).values(), "last_job_id": latest[vm].id})
                for vm, row in aggregates.items()
            }
            first_seen = {vm: (latest[vm].repository_id, row.first_job_at) for vm, row in aggregates.items()}
            plan = plan_batch(names, stored, computed, first_seen)
            # The failure risk follows the same jobs (an import, a history changed by hand): assessed again
            # from the same snapshot, written where it changed. Not a correction of the counters.
            corrected = {c.vm_name for c in plan.corrections}
            rows = {r.vm_name: r for r in stored_rows if every or r.vm_name in corrected or _risk_due(r)} | {
                w["vm_name"]: None for w in plan.writes if w["vm_name"] not in stored
            }
            changed = _risk_changes(rows, recent_runs(conn, list(rows)))
            if dry_run:
                transaction.rollback()
            else:
                if plan.writes:
                    self.jobs.write_machine_summaries(conn, plan.writes)
                self.jobs.write_risk(conn, changed)
        return plan, len(changed)

    def _record(self, report: ReconcileReport) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(summary_reconcile_runs).values(
                    mode=report.mode,
                    started_at=report.started_at,
                    finished_at=report.finished_at,
                    watermark=report.started_at,
                    machines_checked=report.machines_checked,
                    machines_corrected=report.machines_corrected,
                    machines_created=report.machines_created,
                    corrections=[c.as_dict() for c in report.corrections],
                )
            )
