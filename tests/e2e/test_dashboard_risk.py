"""Failure risk in the dashboard: a sortable Risk column, its reasons as tooltip; the Summary's card and reasons."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import SCREENSHOTS
from tests.support.devstack import DevStack
from tests.support.probes import update_body

# The rows' VM names in the order the page's own Bokeh document holds them.
SHOWN = """() => {
  const m = Bokeh.documents[0].get_model_by_name('machines-source');
  return Array.from(m.data instanceof Map ? m.data.get('vm_name') : m.data.vm_name);
}"""
SHOWS = f"(names) => JSON.stringify(({SHOWN})()) === JSON.stringify(names)"


@pytest.fixture(scope="module")
def risky(api: str, stack: DevStack, rollups) -> Iterator[tuple[str, dict[str, str]]]:
    """Three machines, rolled up: one whose last three backups failed, one steady, one whose runs grow longer."""
    prefix = f"riskdash-{int(time.time() * 1000) % 10**9}"
    names = {kind: f"{prefix}-{kind}" for kind in ("failing", "steady", "slowing")}
    plans = {
        "failing": [("completed", 600)] * 3 + [("failed", 120)] * 3,
        "steady": [("completed", 600)] * 6,
        "slowing": [("completed", 600 * 1.2**i) for i in range(6)],
    }
    headers = {"Authorization": f"Bearer {stack.agent_token}"}
    with httpx.Client(base_url=f"{api}/api/v1", headers=headers, timeout=30) as client:
        for kind, runs in plans.items():
            for i, (status, seconds) in enumerate(runs):
                body = {"vm_name": names[kind], "backup_type": "incremental", "repository_id": "repo-risk"}
                job_id = client.post("/backups", json=body).json()["backup_id"]
                start = datetime.now(UTC) - timedelta(hours=4 * (len(runs) - i))
                first = update_body(1, timestamp=start.isoformat())
                assert client.post(f"/telemetry/backup/{job_id}", json=first).status_code == 202
                final = update_body(2, status=status, timestamp=(start + timedelta(seconds=seconds)).isoformat())
                assert client.post(f"/telemetry/backup/{job_id}", json=final).status_code == 200
    rollups.roll_up()
    yield prefix, names


@pytest.fixture(scope="module")
def rollups(settings):
    """The scheduler's jobs, run by hand (tests/conftest.py's `scheduler_jobs`, for a module's fixture)."""
    import dataclasses

    from pipeline.scheduler import SchedulerJobs

    jobs = SchedulerJobs(
        dataclasses.replace(settings, scheduler=dataclasses.replace(settings.scheduler, rollup_batch=1_000_000))
    )
    yield jobs
    jobs.close()


def _risk_header(page: Page):
    return page.get_by_role("button", name=re.compile(r"^Risk( [▲▼])?$"))


def test_the_risk_column_sorts_on_the_server_and_its_tooltip_says_why(page: Page, dashboard: str, risky, viewer):
    prefix, names = risky
    page.goto(dashboard)
    page.locator("input.bk-input").fill(prefix)
    expect(page.locator(".bk-Div", has_text="Machines 1–3 of 3")).to_be_visible()
    failing = viewer.get(f"/machines/{names['failing']}").json()["risk"]
    assert failing["level"] == "high"
    percent = round(100 * failing["score"])
    cell = page.locator(".slick-row", has_text=names["failing"]).locator("span[title]", has_text=f"{percent}%")
    expect(cell).to_have_text(f"{percent}%")
    expect(cell).to_have_attribute("title", f"high risk, {percent} %: " + "; ".join(failing["reasons"]))

    _risk_header(page).click()
    expect(_risk_header(page)).to_have_text("Risk ▼")
    expect(page.locator("select.bk-input option:checked").first).to_have_text("Failure risk: riskiest first")
    riskiest = [
        m["vm_name"] for m in viewer.get("/machines", params={"search": prefix, "sort": "risk"}).json()["machines"]
    ]
    assert riskiest[0] == names["failing"] and riskiest[-1] == names["steady"]
    page.wait_for_function(SHOWS, arg=riskiest)
    page.screenshot(path=SCREENSHOTS / "sorted-by-risk.png")
    _risk_header(page).click()
    expect(_risk_header(page)).to_have_text("Risk ▲")
    safest = list(reversed(riskiest))
    page.wait_for_function(SHOWS, arg=safest)


def test_the_summary_shows_the_score_and_the_reasons(page: Page, dashboard: str, risky, viewer):
    _prefix, names = risky
    page.goto(dashboard)
    page.locator("input.bk-input").fill(names["slowing"])
    expect(page.locator(".bk-Div", has_text="Machines 1–1 of 1")).to_be_visible()
    page.locator(".slick-cell", has_text=names["slowing"]).first.click()
    expect(page.locator(".bk-Dialog")).to_be_visible()
    risk = viewer.get(f"/machines/{names['slowing']}").json()["risk"]
    expect(page.locator(".kpi-risk")).to_have_text(f"{risk['level']} {round(100 * risk['score'])}%")
    reasons = page.locator(".risk-reasons")
    expect(reasons).to_contain_text("Failure risk:")
    assert risk["reasons"][0].startswith("duration grew")
    for reason in risk["reasons"]:
        expect(reasons).to_contain_text(reason)
    page.screenshot(path=SCREENSHOTS / "summary-risk.png")
