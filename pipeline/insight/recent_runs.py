"""A machine's last finished backup runs, as the failure risk reads them (a handful of columns each)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text

from pipeline.insight.risk import RUNS, PastRun
from pipeline.jobs.vocabulary import COMPLETED

__all__ = ["recent_runs"]

# One index range scan per machine, newest first, stopping at RUNS rows: the work is bounded per machine
# however long its history (a window function over a batch would read every job of every machine).
# Cancelled runs are left out (an operator's decision, not the machine's), and so are restores and
# replications, which are not its backups. The duration is the job store's: start (or creation) to end.
_ONE = (
    "(SELECT {i} AS k, id, status, backup_type, bytes_transferred, created_at, "
    "TIMESTAMPDIFF(MICROSECOND, COALESCE(started_at, created_at), completed_at) / 1e6 AS duration "
    "FROM backup_jobs WHERE vm_name = :vm{i} AND job_type = 'backup' AND status IN (:completed, 'failed') "
    "ORDER BY created_at DESC, id DESC LIMIT :runs)"
)


def recent_runs(conn: Connection, vm_names: Sequence[str], runs: int = RUNS) -> dict[str, list[PastRun]]:
    """The last `runs` finished backup runs of each machine, newest first (machines without any: absent)."""
    names = list(dict.fromkeys(vm_names))
    if not names:
        return {}
    sql = " UNION ALL ".join(_ONE.format(i=i) for i in range(len(names)))
    params = {f"vm{i}": name for i, name in enumerate(names)} | {"runs": runs, "completed": COMPLETED}
    found: dict[str, list] = {}
    for row in conn.execute(text(sql), params):
        # Keyed by the name asked for: the comparison follows the column's collation (case-insensitive).
        found.setdefault(names[row.k], []).append(row)
    return {
        vm: [_run(r) for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]
        for vm, rows in found.items()
    }


def _run(row) -> PastRun:
    duration = None if row.duration is None else float(row.duration)
    return PastRun(row.status, row.backup_type, duration, int(row.bytes_transferred or 0))
