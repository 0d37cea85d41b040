"""The PDF download buttons in headless Chromium: the estate report of a period and a machine's report arrive as
valid PDFs (poppler's pdftotext reads them), fetched by the dashboard with its token.

Needs the API's `GET /api/v1/reports/estate.pdf` and `GET /api/v1/machines/{vm}/report.pdf`: without them the
buttons say "does not offer this download" and this test fails on that sentence.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from playwright.sync_api import Page, expect

from dashboards.app.estate_shaping import day_factor
from tests.e2e.conftest import SCREENSHOTS
from tests.e2e.estate_seeds import SeededEstate, seed_estate
from tests.e2e.test_dashboard_estate import CELL_AT, _estate_page, _grid_tab

PDFTOTEXT = shutil.which("pdftotext") or "/usr/bin/pdftotext"


@pytest.fixture(scope="module")
def estate(api: str, engine, settings) -> SeededEstate:
    return seed_estate(engine, settings)


def _pdf_text(path) -> str:
    with open(path, "rb") as file:
        head = file.read(5)
    assert head == b"%PDF-", head
    done = subprocess.run([PDFTOTEXT, "-layout", str(path), "-"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _download(page: Page, button: str):
    """Click `button`; the download, or the page's own sentence when the route refused it."""
    with page.expect_download(timeout=60_000) as started:
        page.get_by_role("button", name=button).click()
    return started.value


def test_pdf_downloads(page: Page, dashboard: str, estate: SeededEstate):
    _estate_page(page, dashboard)
    page.locator(".estate-period").get_by_role("button", name="30 days").click()
    try:
        estate_pdf = _download(page, "Estate report (PDF)")
    except Exception:
        refusal = page.locator(".download-error")
        if refusal.count():
            pytest.fail(f"the estate PDF was refused: {refusal.first.inner_text()}")
        raise
    assert estate_pdf.suggested_filename.endswith(".pdf")
    assert _pdf_text(estate_pdf.path()).strip()

    _grid_tab(page, estate)
    x, y = page.evaluate(CELL_AT, [list(day_factor(estate.day(2))), estate.busy])
    page.mouse.click(x, y)
    expect(page.locator(".bk-Dialog").get_by_text(f"Machine {estate.busy}", exact=True)).to_be_visible()
    page.locator(".machine-report-period").get_by_role("button", name="30 days").click()
    machine_pdf = _download(page, "Machine report (PDF)")
    assert machine_pdf.suggested_filename.endswith(".pdf")
    assert estate.busy in _pdf_text(machine_pdf.path())
    page.screenshot(path=SCREENSHOTS / "machine-report-downloaded.png")
