"""Failure risk on the real stack: assessed as jobs are rolled up, shown and sorted by GET /machines, reconciled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from pipeline.insight.risk import HIGH, PastRun, assess_history, failure_risk
from pipeline.jobs.store import JobStore
from pipeline.reconcile.store import SummaryReconciler
from tests.support.probes import update_body

GB = 10**9


def _run(agent, vm: str, *, seconds: float, size: int, end: str, hours_ago: float, job_type: str = "backup") -> None:
    """One job from its first update to its terminal one, `seconds` apart on the agent's clock."""
    body = {"vm_name": vm, "backup_type": "incremental", "repository_id": "repo-risk", "job_type": job_type}
    job_id = agent.post("/backups", json=body).json()["backup_id"]
    start = datetime.now(UTC) - timedelta(hours=hours_ago)
    first = update_body(1, timestamp=start.isoformat())
    assert agent.post(f"/telemetry/{job_type}/{job_id}", json=first).status_code == 202
    final = update_body(2, status=end, timestamp=(start + timedelta(seconds=seconds)).isoformat())
    final["bytes_transferred"] = final["total_bytes"] = size
    assert agent.post(f"/telemetry/{job_type}/{job_id}", json=final).status_code == 200


def _seed(agent, vm: str, runs: list[tuple[str, float, int]]) -> None:
    """`runs` oldest first: (status, seconds, bytes), one every 6 hours up to now."""
    for i, (status, seconds, size) in enumerate(runs):
        _run(agent, vm, seconds=seconds, size=size, end=status, hours_ago=6 * (len(runs) - i))


def _expected(runs: list[tuple[str, float, int]], age_hours: float | None) -> dict:
    """What the pure function says of these runs, computed here from what was seeded (not read back)."""
    past = [PastRun(status, "incremental", seconds, size) for status, seconds, size in reversed(runs)]
    age = None if age_hours is None else age_hours * 3600
    return failure_risk(assess_history(past), age_seconds=age, rpo_seconds=86_400).as_dict()


def _row(viewer, vm: str) -> dict:
    [row] = viewer.get("/machines", params={"search": vm}).json()["machines"]
    return row


DEGRADING = [("completed", 600 * 1.15**i, 20 * GB) for i in range(8)]
FAILING = [("completed", 600, 20 * GB)] * 4 + [("failed", 120, 2 * GB)] * 3
STEADY = [("completed", 600, 20 * GB)] * 8


def test_a_degrading_machine_is_scored_from_its_rolled_up_runs_with_reasons(agent, viewer, scheduler_jobs, unique):
    vm = f"risk-degrading-{unique}"
    _seed(agent, vm, DEGRADING)
    # A cancelled run and a restore are not its backups' record: they change nothing.
    _run(agent, vm, seconds=30, size=GB, end="cancelled", hours_ago=1)
    _run(agent, vm, seconds=30, size=GB, end="failed", hours_ago=0.5, job_type="restore")
    scheduler_jobs.roll_up()
    risk = _row(viewer, vm)["risk"]
    # The last completed run ended 6 h ago (less its duration); a 24 h objective.
    expected = _expected(DEGRADING, 6 - DEGRADING[-1][1] / 3600)
    assert risk["score"] == pytest.approx(expected["score"], abs=2e-3)
    assert risk["level"] == expected["level"] == "high"
    assert risk["reasons"] == expected["reasons"]
    assert risk["reasons"][0] == "duration grew 166 % over 8 runs"  # 1.15^7 = 2.66
    assert viewer.get(f"/machines/{vm}").json()["risk"] == risk


def test_failures_in_a_row_are_high_and_a_steady_machine_is_low(agent, viewer, scheduler_jobs, unique):
    failing, steady = f"risk-failing-{unique}", f"risk-steady-{unique}"
    _seed(agent, failing, FAILING)
    _seed(agent, steady, STEADY)
    scheduler_jobs.roll_up()
    risk = _row(viewer, failing)["risk"]
    assert risk["level"] == "high" and risk["score"] >= HIGH
    assert risk["reasons"][0] == "3 of the last 7 runs failed"
    assert "the last 3 runs failed in a row" in risk["reasons"]
    calm = _row(viewer, steady)["risk"]
    assert calm["level"] == "low" and calm["reasons"] == ["nothing unusual in the last 8 runs"]


def test_sort_by_risk_orders_every_page_by_the_score_shown(agent, viewer, scheduler_jobs, unique):
    prefix = f"risk-sort-{unique}"
    for name, runs in (("a-steady", STEADY), ("b-failing", FAILING), ("c-degrading", DEGRADING), ("d-one", STEADY[:1])):
        _seed(agent, f"{prefix}-{name}", runs)
    _run(agent, f"{prefix}-e-late", seconds=1, size=GB, end="completed", hours_ago=40)  # past its RPO
    scheduler_jobs.roll_up()

    def page(order: str, offset: int = 0, limit: int = 10) -> list[dict]:
        answer = viewer.get(
            "/machines", params={"search": prefix, "sort": "risk", "order": order, "limit": limit, "offset": offset}
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["machines"]

    riskiest = page("desc")
    scores = [m["risk"]["score"] for m in riskiest]
    assert len(riskiest) == 5 and scores == sorted(scores, reverse=True)
    assert riskiest[0]["vm_name"] == f"{prefix}-b-failing"
    late = next(m for m in riskiest if m["vm_name"] == f"{prefix}-e-late")
    assert late["risk"]["reasons"] == ["16 h past its 24 h RPO"]
    safest = page("asc")
    assert [m["risk"]["score"] for m in safest] == sorted(scores)  # ties (a-steady, d-one) stay in name order
    assert {m["vm_name"] for m in safest} == {m["vm_name"] for m in riskiest}
    paged = [m["vm_name"] for offset in (0, 2, 4) for m in page("desc", offset, 2)]
    assert paged == [m["vm_name"] for m in riskiest]


def test_a_machine_not_assessed_yet_says_so_and_sorts_as_the_intercept(agent, viewer, engine, unique):
    vm = f"risk-unassessed-{unique}"
    _run(agent, vm, seconds=60, size=GB, end="completed", hours_ago=2)  # not rolled up: not assessed
    risk = _row(viewer, vm)["risk"]
    assert risk["reasons"][0].startswith("not assessed yet") and risk["level"] == "low"
    listed = viewer.get("/machines", params={"search": vm, "sort": "risk"})
    assert listed.status_code == 200 and listed.json()["total"] == 1


def test_runs_written_outside_the_pipeline_are_reassessed_by_the_reconcile(viewer, engine, unique):
    vm = f"risk-imported-{unique}"
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        for i, status in enumerate(["completed", "completed", "failed", "failed", "failed"]):
            created = now - timedelta(hours=10 - i)
            conn.execute(
                text(
                    "INSERT INTO backup_jobs (id, vm_name, repository_id, backup_type, job_type, status, created_at, "
                    "started_at, completed_at, bytes_transferred, total_bytes) VALUES (:id, :vm, 'repo-legacy', "
                    "'incremental', 'backup', :status, :at, :at, :done, :size, :size)"
                ),
                {"id": f"{vm}-{i}", "vm": vm, "status": status, "at": created, "done": created + timedelta(minutes=10),
                 "size": GB},
            )  # fmt: skip
    report = SummaryReconciler(engine, JobStore(engine)).reconcile([vm])
    assert report.risk_reassessed == 1 and report.as_dict()["risk_reassessed"] == 1
    risk = _row(viewer, vm)["risk"]
    assert risk["level"] == "high" and risk["reasons"][0] == "3 of the last 5 runs failed"
    # Once assessed, another reconcile of the same jobs writes nothing.
    assert SummaryReconciler(engine, JobStore(engine)).reconcile([vm]).risk_reassessed == 0
    assert viewer.get("/machines", params={"sort": "risky"}).status_code == 400


def test_a_full_reconcile_reads_the_risk_again_only_where_the_job_store_may_have_missed_it(
    agent, viewer, engine, scheduler_jobs, unique
):
    kept, missed = f"risk-kept-{unique}", f"risk-missed-{unique}"
    _seed(agent, kept, FAILING)
    _seed(agent, missed, FAILING)
    scheduler_jobs.roll_up()
    right = _row(viewer, missed)["risk"]

    def assessed(vm: str):
        with engine.connect() as conn:
            return conn.execute(text("SELECT risk_assessed_at FROM machines WHERE vm_name = :vm"), {"vm": vm}).scalar()

    before = assessed(kept)
    # As if a scheduler had stopped between a rollup's commit and the assessment: an older, wrong risk.
    with engine.begin() as conn:
        conn.execute(
            text(
                'UPDATE machines SET risk_logit = -5, risk_factors = \'{"runs": 1, "factors": []}\', '
                "risk_assessed_at = last_job_at - INTERVAL 1 HOUR WHERE vm_name = :vm"
            ),
            {"vm": missed},
        )
    assert _row(viewer, missed)["risk"]["level"] == "low"
    SummaryReconciler(engine, JobStore(engine)).run("all")
    assert assessed(kept) == before  # assessed since its newest job: left alone
    assert _row(viewer, missed)["risk"] == right
