"""Reconciling a batch of machines, without a database: what differs, what is written, what is created."""

from __future__ import annotations

from datetime import datetime

from pipeline.reconcile.plan import compare, plan_batch
from pipeline.reconcile.vocabulary import KEPT_CORRECTIONS, Correction, MachineSummary, ReconcileReport

T1, T2 = datetime(2026, 11, 1, 2, 0), datetime(2026, 11, 2, 2, 0)
JOBS = MachineSummary(3, 2, 1, 0, 500, "job-3", T2, T1)


def test_a_summary_that_matches_its_jobs_needs_nothing():
    assert compare("vm", JOBS, JOBS) == []
    plan = plan_batch(["vm"], {"vm": JOBS}, {"vm": JOBS}, {})
    assert plan.writes == [] and plan.corrections == [] and plan.created == 0


def test_each_wrong_field_is_named_with_both_values():
    stored = MachineSummary(2, 2, 0, 0, 500, "job-2", T1, T1)
    assert compare("vm", stored, JOBS) == [
        Correction("vm", "total_jobs", 2, 3),
        Correction("vm", "failed", 0, 1),
        Correction("vm", "last_job_id", "job-2", "job-3"),
        Correction("vm", "last_job_at", T1, T2),
    ]
    [write] = plan_batch(["vm"], {"vm": stored}, {"vm": JOBS}, {}).writes
    assert write == {"vm_name": "vm", **JOBS.values()}


def test_a_machine_known_only_from_its_jobs_gets_a_row():
    plan = plan_batch(["new"], {}, {"new": JOBS}, {"new": ("repo-1", T1)})
    assert plan.created == 1
    [write] = plan.writes
    assert write["repository_id"] == "repo-1" and write["created_at"] == T1 and write["total_jobs"] == 3
    assert {c.field for c in plan.corrections} == {
        "total_jobs", "successful", "failed", "protected_bytes", "last_job_id", "last_job_at", "last_success_at"
    }  # fmt: skip


def test_a_machine_whose_jobs_are_all_gone_is_zeroed_and_one_with_neither_is_left_alone():
    plan = plan_batch(["emptied", "nothing"], {"emptied": JOBS}, {}, {})
    assert plan.writes == [{"vm_name": "emptied", **MachineSummary().values()}]
    assert plan.created == 0


def test_a_report_counts_every_correction_and_keeps_the_first_hundred():
    report = ReconcileReport("all", T1)
    corrections = [Correction(f"vm-{i}", "failed", 0, 1) for i in range(KEPT_CORRECTIONS + 50)]
    report.add(corrections, checked=500, created=2)
    report.add([], checked=10, created=0)
    assert report.machines_checked == 510 and report.machines_created == 2
    assert report.machines_corrected == KEPT_CORRECTIONS + 50 and report.corrections_total == KEPT_CORRECTIONS + 50
    assert len(report.corrections) == KEPT_CORRECTIONS
    assert report.as_dict()["corrections"][0] == {"vm_name": "vm-0", "field": "failed", "stored": 0, "computed": 1}
