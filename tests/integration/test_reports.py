"""Reports on the real stack: the API's figures equal SQL counts computed here, independently, over seeded jobs."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

HOUR = timedelta(hours=1)


def _window(unique: str) -> datetime:
    """A week of the past that only this test's jobs occupy (the test database keeps every run's jobs)."""
    return datetime(2001, 1, 1) + timedelta(days=7 * (int(unique, 16) % 1000))


def _seed(engine, rows: list[dict]) -> None:
    with engine.begin() as conn:
        for r in rows:
            conn.execute(
                text(
                    "INSERT INTO backup_jobs (id, vm_name, repository_id, backup_type, job_type, status, created_at, "
                    "started_at, completed_at, bytes_transferred, total_bytes, avg_speed_bps, error_message, "
                    "anomaly_count) VALUES (:id, :vm, :repo, 'incremental', 'backup', :status, :created, :created, "
                    ":done, :size, :size, :speed, :error, :anomalies)"
                ),
                {"repo": "repo-a", "speed": 1000, "error": None, "anomalies": None, **r},
            )


def _row(job_id: str, vm: str, status: str, created: datetime, done: datetime | None, size: int = 1) -> dict:
    return {"id": job_id, "vm": vm, "status": status, "created": created, "done": done, "size": size}


def _jobs(prefix: str, start: datetime) -> list[dict]:
    """12 jobs this week on 3 machines (3 failed, 1 running, 1 unusual), 4 the week before."""
    rows = []
    for i in range(12):
        status = "failed" if i % 4 == 0 else ("running" if i == 11 else "completed")
        created = start + timedelta(hours=5 * i + 1)
        rows.append({
            "id": f"{prefix}-{i}", "vm": f"{prefix}-vm-{i % 3}", "status": status, "created": created,
            "done": None if status == "running" else created + timedelta(minutes=10 + i), "size": 1000 * (i + 1),
            "error": ("disk full" if i < 8 else "NBD reset") if status == "failed" else None,
            "anomalies": 2 if i == 5 else None, "repo": "repo-a" if i % 2 else "repo-b",
        })  # fmt: skip
    for i in range(4):
        created = start - timedelta(days=3, hours=i)
        rows.append({"id": f"{prefix}-old-{i}", "vm": f"{prefix}-vm-0", "status": "completed", "created": created,
                     "done": created + timedelta(minutes=5), "size": 500})  # fmt: skip
    return rows


def test_the_estate_report_equals_independent_sql(viewer, engine, unique):
    start = _window(unique)
    prefix = f"rep-{unique}"
    _seed(engine, _jobs(prefix, start))
    params = {"from": start.isoformat() + "Z", "to": (start + timedelta(days=7)).isoformat() + "Z"}
    report = viewer.get("/reports/estate", params=params).json()

    with engine.connect() as conn:
        where = "created_at >= :s AND created_at < :e"
        bounds = {"s": start, "e": start + timedelta(days=7)}
        counts = dict(
            conn.execute(text(f"SELECT status, COUNT(*) FROM backup_jobs WHERE {where} GROUP BY status"), bounds).all()
        )
        protected = conn.execute(
            text(f"SELECT SUM(bytes_transferred) FROM backup_jobs WHERE {where} AND status = 'completed'"), bounds
        ).scalar_one()
        largest = conn.execute(
            text(
                f"SELECT id FROM backup_jobs WHERE {where} AND status = 'completed' ORDER BY bytes_transferred DESC "
                "LIMIT 1"
            ),
            bounds,  # fmt: skip
        ).scalar_one()
    totals = report["totals"]
    assert (
        (totals["jobs"], totals["completed"], totals["failed"], totals["running"])
        == (sum(counts.values()), counts["completed"], counts["failed"], counts["running"])
        == (12, 8, 3, 1)
    )
    assert totals["bytes_protected"] == int(protected)
    assert totals["success_rate"] == round(100 * 8 / 11, 1) and totals["machines"] == 3
    assert totals["unusual_runs"] == 1 and report["unusual_runs"][0]["backup_id"] == f"{prefix}-5"
    assert report["failure_reasons"] == [
        {"reason": "disk full", "jobs": 2, "latest_at": (start + timedelta(hours=5 * 4 + 1)).isoformat() + "Z"},
        {"reason": "NBD reset", "jobs": 1, "latest_at": (start + timedelta(hours=5 * 8 + 1)).isoformat() + "Z"},
    ]
    assert report["largest"][0]["backup_id"] == largest == f"{prefix}-10"
    assert report["slowest"][0]["backup_id"] == f"{prefix}-10" and report["slowest"][0]["duration_seconds"] == 1200
    assert sum(report["busiest_hour"]["by_hour"]) == 12
    week = report["week_over_week"]["figures"]
    assert week["jobs"] == {"now": 12, "before": 4, "change_percent": 200.0}
    assert "the estate ran 200 % more backups than the week before" in report["week_over_week"]["sentences"]


def test_the_estate_csv_streams_every_job_of_the_period(viewer, engine, unique):
    start = _window(unique)
    prefix = f"csv-{unique}"
    _seed(engine, _jobs(prefix, start))
    params = {"from": start.isoformat() + "Z", "to": (start + timedelta(days=7)).isoformat() + "Z"}
    response = viewer.get("/reports/estate.csv", params=params)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["backup_id"] for r in rows] == [f"{prefix}-{i}" for i in range(12)]
    assert rows[0]["status"] == "failed" and rows[0]["error_message"] == "disk full"


def test_the_grid_shows_each_days_outcome(viewer, engine, unique):
    prefix = f"grid-{unique}"
    today = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    day = lambda n, h: today - timedelta(days=n) + timedelta(hours=h)  # noqa: E731
    _seed(engine, [
        _row(f"{prefix}-a1", f"{prefix}-a", "completed", day(2, 1), day(2, 2)),
        _row(f"{prefix}-a2", f"{prefix}-a", "failed", day(1, 1), day(1, 2)),
        _row(f"{prefix}-a3", f"{prefix}-a", "completed", day(1, 3), day(1, 4)),
        _row(f"{prefix}-b1", f"{prefix}-b", "failed", day(2, 1), day(2, 2)),
    ])  # fmt: skip
    with engine.begin() as conn:
        for vm in ("a", "b"):
            conn.execute(text("INSERT INTO machines (vm_name, repository_id, created_at, updated_at, total_jobs) "
                              "VALUES (:vm, 'r', :t, :t, 1)"), {"vm": f"{prefix}-{vm}", "t": day(30, 0)})  # fmt: skip
    grid = viewer.get("/reports/grid", params={"search": prefix, "days": 5}).json()
    assert grid["total"] == 2 and len(grid["days"]) == 5 and grid["days"][-1] == today.date().isoformat()
    cells = {m["vm_name"]: m["cells"] for m in grid["machines"]}
    assert cells[f"{prefix}-a"] == ["none", "none", "success", "warning", "none"]
    assert cells[f"{prefix}-b"] == ["none", "none", "failed", "none", "none"]
    exported = list(csv.reader(io.StringIO(viewer.get("/reports/grid.csv", params={"search": prefix, "days": 5}).text)))
    assert exported[0] == ["vm_name", *grid["days"]] and exported[1] == [f"{prefix}-a", *cells[f"{prefix}-a"]]


def test_the_timeline_has_a_bar_per_job_and_counts_jobs_at_once(viewer, engine, unique):
    start = _window(unique)
    prefix = f"tl-{unique}"
    _seed(engine, [
        _row(f"{prefix}-1", f"{prefix}-1", "completed", start, start + 2 * HOUR, size=7200),
        _row(f"{prefix}-2", f"{prefix}-2", "failed", start + HOUR, start + 3 * HOUR, size=0),
    ])  # fmt: skip
    params = {"from": start.isoformat() + "Z", "to": (start + 4 * HOUR).isoformat() + "Z"}
    line = viewer.get("/reports/timeline", params=params).json()
    bars = {b["backup_id"]: b for b in line["bars"]}
    assert set(bars) == {f"{prefix}-1", f"{prefix}-2"}
    assert (
        bars[f"{prefix}-1"]["end"] == (start + 2 * HOUR).isoformat() + "Z" and bars[f"{prefix}-1"]["avg_speed_bps"] == 1
    )
    running = [b["running"] for b in line["buckets"]]
    assert len(running) == 288 and max(running) == 2 and running[0] == 1 and running[-1] == 0
    assert (
        viewer.get("/reports/timeline", params={"from": params["from"], "to": "2099-01-01T00:00:00Z"}).status_code
        == 400
    )


def test_bad_report_parameters_are_400(viewer):
    assert viewer.get("/reports/estate", params={"period": "1w"}).status_code == 400
    assert viewer.get("/reports/estate", params={"period": "7d", "from": "2026-01-01T00:00:00Z"}).status_code == 400
    assert viewer.get("/reports/grid", params={"days": 0}).status_code == 400


def test_a_machine_carries_its_week_over_week(agent, viewer, unique):
    from tests.support.probes import update_body

    vm = f"wow-{unique}"
    job = agent.post("/backups", json={"vm_name": vm, "backup_type": "full", "repository_id": "r"}).json()["backup_id"]
    assert agent.post(f"/telemetry/backup/{job}", json=update_body(1, status="completed")).status_code == 200
    week = viewer.get(f"/machines/{vm}").json()["week_over_week"]
    assert week["figures"]["jobs"] == {"now": 1, "before": 0, "change_percent": None}
    assert week["sentences"] == []


def test_the_hour_summary_stays_exact_before_and_after_its_refresh_and_as_jobs_change(viewer, engine, unique):
    from pipeline.reports.store import EstateHoursStore

    start = _window(unique)
    prefix = f"hours-{unique}"
    params = {"from": start.isoformat() + "Z", "to": (start + timedelta(days=7)).isoformat() + "Z"}
    _seed(engine, _jobs(prefix, start))
    fresh = viewer.get("/reports/estate", params=params).json()
    store = EstateHoursStore(engine)
    store.refresh()
    store.refresh()  # a second refresh: these hours are no longer changed since the watermark
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT SUM(jobs) FROM estate_hours WHERE hour >= :s AND hour < :e"),
                              {"s": start, "e": start + timedelta(days=7)}).scalar_one()  # fmt: skip
    assert int(stored) == 12, "the refresh stored this window's hours"
    read_from_summary = viewer.get("/reports/estate", params=params).json()
    for name in ("totals", "slowest", "largest", "failure_reasons", "busiest_hour", "week_over_week"):
        assert read_from_summary[name] == fresh[name], name
    # A job of the window fails by plain SQL after the refresh: the report sees it at once.
    with engine.begin() as conn:
        conn.execute(text("UPDATE backup_jobs SET status = 'failed', error_message = 'late' WHERE id = :id"),
                     {"id": f"{prefix}-1"})  # fmt: skip
    changed = viewer.get("/reports/estate", params=params).json()["totals"]
    assert (changed["completed"], changed["failed"]) == (7, 4)
