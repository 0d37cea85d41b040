"""Summaries that cannot drift: jobs written outside the job store are found and reconciled, on the real stack."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from pipeline.jobs.store import JobStore
from pipeline.reconcile.store import SummaryReconciler
from tests.support.devstack import PROJECT_DIR
from tests.support.probes import update_body

HOUR = timedelta(hours=1)


def _plain_sql_jobs(engine, vm_name: str, jobs: list[tuple[str, str, datetime, int]]) -> None:
    """Rows as the job sheet's own engine (or an import by hand) writes them: no job store involved."""
    with engine.begin() as conn:
        for job_id, status, created, size in jobs:
            conn.execute(
                text(
                    "INSERT INTO backup_jobs (id, vm_name, repository_id, backup_type, status, created_at, started_at, "
                    "completed_at, bytes_transferred, total_bytes) VALUES (:id, :vm, 'repo-legacy', 'incremental', "
                    ":status, :created, :created, :done, :size, :size)"
                ),
                {
                    "id": job_id,
                    "vm": vm_name,
                    "status": status,
                    "created": created,
                    "done": None if status == "running" else created + HOUR,
                    "size": size,
                },
            )


def _aggregate(engine, vm_name: str) -> tuple:
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                text(
                    "SELECT COUNT(*), SUM(status = 'completed'), SUM(status = 'failed'), "
                    "SUM(CASE WHEN status = 'completed' THEN bytes_transferred ELSE 0 END) "
                    "FROM backup_jobs WHERE vm_name = :vm"
                ),
                {"vm": vm_name},
            ).one()
        )


def _counters(engine, vm_name: str) -> tuple:
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                text("SELECT total_jobs, successful, failed, protected_bytes FROM machines WHERE vm_name = :vm"),
                {"vm": vm_name},
            ).one()
        )


def _marked(engine, job_id: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT external_change_at IS NOT NULL FROM backup_jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one()


@pytest.fixture
def reconciler(engine):
    return SummaryReconciler(engine, JobStore(engine), batch_size=50)


def test_jobs_written_by_plain_sql_appear_after_one_reconcile_with_counts_rpo_and_last_job(
    viewer, engine, reconciler, unique
):
    vm = f"legacy-{unique}"
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    history = [
        (f"legacy-{unique}-{i}", "failed" if i == 2 else "completed", now - (10 - i) * HOUR, 1000 * (i + 1))
        for i in range(5)
    ]
    _plain_sql_jobs(engine, vm, history)
    assert viewer.get(f"/machines/{vm}").status_code == 404, "the summary does not know these jobs yet"

    report = reconciler.run("changed")
    assert report.machines_created >= 1 and report.machines_corrected >= 1
    machine = viewer.get(f"/machines/{vm}").json()
    kpis = machine["kpis"]
    assert (kpis["total_backups"], kpis["successful"], kpis["failed"]) == (5, 4, 1)
    assert kpis["total_protected_bytes"] == 1000 + 2000 + 4000 + 5000  # the failed third run protects nothing
    assert machine["last_backup"]["backup_id"] == f"legacy-{unique}-4"
    # The last success ended one hour after the newest job was created: six hours ago.
    assert datetime.fromisoformat(machine["rpo"]["last_success_at"]) == (now - 6 * HOUR + HOUR).replace(tzinfo=UTC)
    listed = viewer.get("/machines", params={"search": vm}).json()
    assert [m["vm_name"] for m in listed["machines"]] == [vm] and listed["machines"][0]["total_backups"] == 5

    again = reconciler.run("changed")
    assert again.machines_corrected == 0 and again.corrections_total == 0, again.as_dict()


def test_the_job_store_leaves_its_own_writes_unmarked_through_a_whole_life(agent, engine, scheduler_jobs, unique):
    created = agent.post("/backups", json={"vm_name": f"own-{unique}", "backup_type": "full", "repository_id": "r"})
    job_id = created.json()["backup_id"]
    assert not _marked(engine, job_id)
    for i in range(1, 4):
        assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(i, total=3)).status_code == 202
    late = update_body(1, total=3, timestamp=(datetime.now(UTC) - HOUR).isoformat())
    assert agent.post(f"/telemetry/backup/{job_id}", json=late).status_code == 202  # a touch, not a write
    assert (
        agent.post(f"/telemetry/backup/{job_id}", json=update_body(3, total=3, status="completed")).status_code == 200
    )
    scheduler_jobs.roll_up()
    scheduler_jobs.purge()
    assert agent.get(f"/backups/{job_id}").json()["has_performance_metrics"]
    assert not _marked(engine, job_id), "every job-store write names external_change_at"

    reaped = agent.post("/backups", json={"vm_name": f"own-{unique}", "backup_type": "full", "repository_id": "r"})
    reaped_id = reaped.json()["backup_id"]
    assert agent.post(f"/telemetry/backup/{reaped_id}", json=update_body(1)).status_code == 202
    with engine.begin() as conn:  # this test's own write: silence by hand, then the mark cleared by hand
        conn.execute(
            text(
                "UPDATE backup_jobs SET last_seen_at = UTC_TIMESTAMP(6) - INTERVAL 2 HOUR, external_change_at = NULL "
                "WHERE id = :id"
            ),
            {"id": reaped_id},
        )
    assert reaped_id in JobStore(engine).reap(3600)
    assert not _marked(engine, reaped_id)


def test_a_status_changed_by_plain_sql_is_counted_by_the_next_run(agent, engine, reconciler, unique):
    vm = f"flipped-{unique}"
    job_id = agent.post("/backups", json={"vm_name": vm, "backup_type": "full", "repository_id": "r"}).json()[
        "backup_id"
    ]
    assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(1)).status_code == 202
    with engine.begin() as conn:  # the job sheet's engine ends the job its own way
        conn.execute(
            text("UPDATE backup_jobs SET status = 'failed', completed_at = UTC_TIMESTAMP(6) WHERE id = :id"),
            {"id": job_id},
        )
    assert _marked(engine, job_id)
    assert _counters(engine, vm)[2] == 0
    reconciler.run("changed")
    assert _counters(engine, vm) == (1, 0, 1, 0)


def test_deleted_jobs_are_found_by_a_full_run(engine, reconciler, unique):
    vm = f"deleted-{unique}"
    now = datetime.now(UTC).replace(tzinfo=None)
    _plain_sql_jobs(engine, vm, [(f"{vm}-{i}", "completed", now - (3 - i) * HOUR, 100) for i in range(3)])
    reconciler.run("changed")
    assert _counters(engine, vm) == (3, 3, 0, 300)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM backup_jobs WHERE id = :id"), {"id": f"{vm}-2"})
    # A DELETE marks nothing: only a run over every machine is sure to see it.
    report = reconciler.run("all")
    assert _counters(engine, vm) == (2, 2, 0, 200)
    assert report.machines_checked >= 1


def test_a_job_ending_while_its_machine_is_reconciled_is_counted_once(agent, engine, unique):
    """The reconcile holds the machine's row from its read to its write: a job that ends meanwhile waits and
    then adds itself, instead of being overwritten by a count taken before it ended."""
    vm = f"race-{unique}"
    job_id = agent.post("/backups", json={"vm_name": vm, "backup_type": "full", "repository_id": "r"}).json()[
        "backup_id"
    ]
    assert agent.post(f"/telemetry/backup/{job_id}", json=update_body(1, total=1)).status_code == 202
    with engine.begin() as conn:  # a drifted counter, so that the reconcile has something to write
        conn.execute(text("UPDATE machines SET total_jobs = 99 WHERE vm_name = :vm"), {"vm": vm})

    read, release = threading.Event(), threading.Event()

    class PausingStore(JobStore):
        def write_machine_summaries(self, conn, writes):  # after the batch's snapshot, before its write
            read.set()
            assert release.wait(30)
            super().write_machine_summaries(conn, writes)

    reconciler = SummaryReconciler(engine, PausingStore(engine))
    worker = threading.Thread(target=reconciler.reconcile, args=([vm],))
    worker.start()
    answers: list[int] = []
    try:
        assert read.wait(30)
        final = update_body(1, total=1, status="completed")
        ender = threading.Thread(
            target=lambda: answers.append(agent.post(f"/telemetry/backup/{job_id}", json=final).status_code)
        )
        ender.start()
        ender.join(1.0)  # the job's end waits for the machine's row (or, unlocked, would be done by now)
    finally:
        release.set()
        worker.join()
    ender.join()
    assert answers == [200]
    assert _counters(engine, vm) == _aggregate(engine, vm) == (1, 1, 0, 10)


def test_readiness_reports_jobs_changed_outside_until_a_reconcile(api, engine, reconciler, unique):
    import httpx

    reconciler.run("changed")
    _plain_sql_jobs(engine, f"ready-{unique}", [(f"ready-{unique}-0", "completed", datetime(2026, 1, 1), 1)])
    summary = httpx.get(f"{api}/api/v1/health/ready").json()["checks"]["summary"]
    assert summary["jobs_changed_outside"] >= 1
    reconciler.run("changed")
    summary = httpx.get(f"{api}/api/v1/health/ready").json()["checks"]["summary"]
    assert summary["jobs_changed_outside"] == 0
    assert summary["last_run"]["mode"] == "changed"


def test_the_scheduler_reconciles_and_its_metrics_report_the_drift(engine, scheduler_jobs, unique):
    from prometheus_client import generate_latest

    scheduler_jobs.reconcile()
    _plain_sql_jobs(engine, f"metric-{unique}", [(f"metric-{unique}-0", "completed", datetime(2026, 1, 1), 1)])
    assert scheduler_jobs.reconcile() >= 1
    text_metrics = generate_latest(scheduler_jobs.metrics.registry).decode()
    drift = [line for line in text_metrics.splitlines() if line.startswith("sendense_summary_drift_machines ")]
    assert drift and float(drift[0].split()[1]) >= 1
    assert "sendense_summary_corrections_total" in text_metrics


def test_reconcile_command_checks_then_corrects(stack, engine, unique):
    _plain_sql_jobs(engine, f"cli-{unique}", [(f"cli-{unique}-0", "completed", datetime(2026, 2, 1), 7)])

    def sendense(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args], cwd=PROJECT_DIR, capture_output=True, text=True, check=False
        )

    check = sendense("reconcile", "--check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert f"cli-{unique}" in check.stdout and "would correct" in check.stderr
    assert sendense("reconcile").returncode == 0
    again = sendense("reconcile", "--check")
    assert again.returncode == 0, again.stdout + again.stderr
