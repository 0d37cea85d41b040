"""Pure: a machine's summary from its jobs' aggregates, and what differs from the stored one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pipeline.reconcile.vocabulary import SUMMARY_FIELDS, Correction, MachineSummary

__all__ = ["BatchPlan", "compare", "plan_batch"]


def compare(vm_name: str, stored: MachineSummary, computed: MachineSummary) -> list[Correction]:
    """Every summary field whose stored value is not what the jobs say, in SUMMARY_FIELDS order."""
    return [
        Correction(vm_name, name, getattr(stored, name), getattr(computed, name))
        for name in SUMMARY_FIELDS
        if getattr(stored, name) != getattr(computed, name)
    ]


@dataclass
class BatchPlan:
    """The rows to write for one batch of machines, and the corrections they make."""

    writes: list[dict] = field(default_factory=list)
    """`machines` values to upsert: vm_name, the summary fields, and repository_id/created_at for new rows."""
    created: int = 0
    corrections: list[Correction] = field(default_factory=list)


def plan_batch(
    names: Iterable[str],
    stored: Mapping[str, MachineSummary],
    computed: Mapping[str, MachineSummary],
    first_seen: Mapping[str, tuple[str, object]],
) -> BatchPlan:
    """Decide a batch: machines whose stored summary differs are rewritten; machines with jobs but no row
    get one (`first_seen`: the repository of their latest job and their first job's creation); a machine
    with a row and no jobs left is zeroed; a machine with neither is nothing."""
    plan = BatchPlan()
    for vm_name in names:
        jobs = computed.get(vm_name, MachineSummary())
        row = stored.get(vm_name)
        if row is None:
            if jobs.total_jobs == 0:
                continue
            repository_id, created_at = first_seen[vm_name]
            plan.created += 1
            plan.corrections.extend(compare(vm_name, MachineSummary(), jobs))
            plan.writes.append(
                {"vm_name": vm_name, "repository_id": repository_id, "created_at": created_at, **jobs.values()}
            )
            continue
        differences = compare(vm_name, row, jobs)
        if differences:
            plan.corrections.extend(differences)
            plan.writes.append({"vm_name": vm_name, **jobs.values()})
    return plan
