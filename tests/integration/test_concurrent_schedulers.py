"""Two scheduler processes on the same databases roll every finished job up exactly once."""

from __future__ import annotations

import re
from collections import Counter

from sqlalchemy import bindparam, func, select

from pipeline.db.tables import backup_jobs
from tests.conftest import OUTPUT_DIR
from tests.support.probes import update_body, wait_for

JOBS = 60


def test_two_schedulers_roll_each_job_up_exactly_once(agent, engine, stack, unique):
    job_ids = []
    for n in range(JOBS):
        created = agent.post(
            "/backups", json={"vm_name": f"claims-{unique}-{n % 7}", "backup_type": "full", "repository_id": "r"}
        )
        job_ids.append(created.json()["backup_id"])
    updates = [
        {"job_type": "backup", "job_id": job_id, **update_body(i, total=8)} for job_id in job_ids for i in range(1, 8)
    ]
    assert agent.post("/telemetry/batch", json={"updates": updates}).json()["accepted"] == len(updates)

    logs = [OUTPUT_DIR / f"scheduler-{unique}-{k}.log" for k in (1, 2)]
    env = {"SENDENSE_ROLLUP_INTERVAL": "0.3", "SENDENSE_ROLLUP_BATCH": "3"}
    procs = [stack.start_process("scheduler", log_path=log, env=env) for log in logs]
    try:
        # Both running before any of our jobs finishes: one that starts late could find nothing left.
        wait_for(
            lambda: all(log.exists() and "scheduler: rollup every" in log.read_text() for log in logs),
            timeout=60, interval=0.2, what="both schedulers to start",
        )  # fmt: skip
        for n, job_id in enumerate(job_ids):
            status = "failed" if n % 5 == 0 else "completed"
            answer = agent.post(f"/telemetry/backup/{job_id}", json=update_body(8, total=8, status=status))
            assert answer.status_code == 200

        def all_rolled_up() -> bool:
            with engine.connect() as conn:
                done = conn.execute(
                    select(func.count()).where(
                        backup_jobs.c.id.in_(bindparam("ids", expanding=True)), backup_jobs.c.purged_at.is_not(None)
                    ),
                    {"ids": job_ids},
                ).scalar_one()
            return done == JOBS

        wait_for(all_rolled_up, timeout=90, interval=0.5, what="both schedulers to roll every job up")
    finally:
        for proc in procs:
            assert stack.stop_process(proc) == 0

    pattern = re.compile(r"rolled up (\S+) \(")
    per_process = [Counter(pattern.findall(log.read_text())) for log in logs]
    ours = set(job_ids)
    combined = Counter()
    for counts in per_process:
        combined.update({job_id: n for job_id, n in counts.items() if job_id in ours})
    assert set(combined) == ours
    assert all(n == 1 for n in combined.values()), [j for j, n in combined.items() if n > 1]
    # Both processes took part, so the claims really were contended.
    assert all(any(job_id in ours for job_id in counts) for counts in per_process)
    with engine.connect() as conn:
        metrics = conn.execute(
            select(backup_jobs.c.performance_metrics).where(backup_jobs.c.id.in_(bindparam("ids", expanding=True))),
            {"ids": job_ids},
        ).scalars()
        assert all(m["snapshots_recorded"] == 8 for m in metrics)


def test_a_claim_held_by_one_scheduler_leaves_the_other_jobs_claimable(agent, engine, unique):
    """A scheduler's claim locks the job it took, not every job due: a second scheduler claims the next
    one meanwhile (without an index in completion order, InnoDB read and locked every candidate)."""
    from pipeline.jobs.store import JobStore
    from pipeline.rollup.job import CLAIM_COLUMNS

    for _ in range(3):
        created = agent.post(
            "/backups", json={"vm_name": f"held-{unique}", "backup_type": "full", "repository_id": "r"}
        )
        job_id = created.json()["backup_id"]
        assert (
            agent.post(f"/telemetry/backup/{job_id}", json=update_body(8, total=8, status="completed")).status_code
            == 200
        )
    store = JobStore(engine)
    with store.claim_rollup(CLAIM_COLUMNS) as first, store.claim_rollup(CLAIM_COLUMNS) as second:
        assert first is not None and second is not None
        assert first.job.id != second.job.id
