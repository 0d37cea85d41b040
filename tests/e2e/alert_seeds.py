"""Alerts for the browser tests, raised by the real AlertEvaluator from jobs made through the API."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from pipeline.alerts.evaluator import AlertEvaluator
from pipeline.alerts.heartbeats import HeartbeatStore
from pipeline.alerts.store import AlertStore
from tests.support.devstack import DevStack
from tests.support.probes import update_body

__all__ = ["SeededAlerts", "seed_alerts"]

# The pipeline alert's heartbeat: a process whose commit queue has been full for ten minutes.
HEARTBEAT = "e2e-dashboard-alerts"


@dataclass
class SeededAlerts:
    """Machines with one alert each: a failed job (critical), past its RPO (warning), a failed job made info
    by a per-machine override, and a failed job resolved by a later success; the pipeline's own critical one."""

    suffix: str
    critical_vm: str
    warning_vm: str
    info_vm: str
    resolved_vm: str
    ids: dict[str, int]  # vm name (or "pipeline") → alert id
    evaluate: Callable[[], object]  # one run of the evaluator, as the scheduler does it
    succeed: Callable[[str], str]  # a completed job of that machine, ended just now

    @property
    def machines(self) -> list[str]:
        return [self.critical_vm, self.warning_vm, self.info_vm, self.resolved_vm]


def _run(agent: httpx.Client, vm: str, status: str, ago: timedelta) -> str:
    body = {"vm_name": vm, "backup_type": "full", "repository_id": "repo-alerts"}
    created = agent.post("/backups", json=body)
    assert created.status_code == 201, created.text
    job_id = created.json()["backup_id"]
    start = datetime.now(UTC) - ago
    first = update_body(1, total=10, timestamp=start.isoformat())
    assert agent.post(f"/telemetry/backup/{job_id}", json=first).status_code == 202
    last = update_body(10, total=10, status=status, timestamp=(start + timedelta(seconds=60)).isoformat())
    if status == "failed":
        last["error_message"] = "NBD server reset the connection"
    assert agent.post(f"/telemetry/backup/{job_id}", json=last).status_code == 200
    return job_id


def seed_alerts(api: str, stack: DevStack, engine, settings) -> Iterator[SeededAlerts]:
    """Seed, yield, then resolve the pipeline alert again (its heartbeat says all is well)."""
    suffix = f"{int(time.time() * 1000) % 10**9}"
    crit, warn, info, gone = (f"alerts-{kind}-{suffix}" for kind in ("crit", "warn", "info", "gone"))
    heartbeats = HeartbeatStore(engine)
    # No hold-down: a resolve is a resolve at once.
    evaluator = AlertEvaluator(
        AlertStore(engine), heartbeats, dataclasses.replace(settings.alerts, hold_down=0.0), rpo_default=86_400
    )
    # Whatever the shared test database has pending fires now, so that this module's alerts are the newest.
    evaluator.run_once()
    headers = {"Authorization": f"Bearer {stack.agent_token}"}
    operator = {"Authorization": f"Bearer {stack.operator_token}"}
    with (
        httpx.Client(base_url=f"{api}/api/v1", headers=headers, timeout=30) as agent,
        httpx.Client(base_url=f"{api}/api/v1", headers=operator, timeout=30) as ops,
    ):
        override = {"rule": "job_failed", "vm_name": info, "severity": "info", "updated_by": "e2e"}
        assert ops.put("/alert-rules", json=override).status_code == 200
        _run(agent, crit, "failed", timedelta(minutes=20))
        _run(agent, info, "failed", timedelta(minutes=15))
        _run(agent, gone, "failed", timedelta(minutes=30))
        _run(agent, warn, "completed", timedelta(minutes=95))
        # An objective of one hour, last success 95 minutes ago: 1.6× its RPO, a warning.
        assert ops.put(f"/machines/{warn}/rpo", json={"rpo_seconds": 3600}).status_code == 200
        queue_full = (datetime.now(UTC) - timedelta(minutes=10)).replace(tzinfo=None)
        heartbeats.beat(HEARTBEAT, queue_full_since=queue_full, detail="e2e: commit queue full")
        evaluator.run_once()
        _run(agent, gone, "completed", timedelta(minutes=5))
        evaluator.run_once()
        ids: dict[str, int] = {}
        for vm in (crit, warn, info, gone):
            found = agent.get("/alerts", params={"vm_name": vm}).json()["alerts"]
            assert len(found) == 1, (vm, found)
            ids[vm] = found[0]["id"]
        pipeline = agent.get("/alerts", params={"rule": "pipeline_unhealthy", "state": "firing"}).json()["alerts"]
        ids["pipeline"] = next(a["id"] for a in pipeline if a["details"].get("component") == "commit_queue")

        def succeed(vm: str) -> str:
            return _run(agent, vm, "completed", timedelta())

        yield SeededAlerts(suffix, crit, warn, info, gone, ids, evaluator.run_once, succeed)
        heartbeats.beat(HEARTBEAT)
        evaluator.run_once()
