"""Report documents on the real stack: PDFs parsed with poppler's pdftotext and pdfimages, their figures equal to
SQL counted here over seeded jobs, their charts present; a hostile machine name escaped in the HTML."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import text

from tests.integration.test_reports import _jobs, _seed, _window

# Machine names hold anything but control characters, '/' and '\\' (pipeline/ingest/models.py NAME_PATTERN).
HOSTILE = "<script>alert(\"x\")<script> & 'db' <img src=http:127.0.0.1:1>"


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def pdf_images(pdf: bytes, tmp_path: Path) -> list[list[str]]:
    """`pdfimages -list` rows of the pictures (page, num, type, width, height, …; their alpha masks left out)."""
    path = tmp_path / "images.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdfimages", "-list", str(path)], capture_output=True, text=True, check=True).stdout
    return [row for row in (line.split() for line in out.splitlines()[2:]) if row and row[2] == "image"]


def _free_window(engine, unique: str):
    """A week of the past with no job in it nor in the week before (the test database keeps every run's jobs,
    and week-over-week reads the week before): this test's figures are its own jobs alone."""
    start = _window(unique)
    with engine.connect() as conn:
        while conn.execute(
            text("SELECT COUNT(*) FROM backup_jobs WHERE created_at >= :s AND created_at < :e"),
            {"s": start - timedelta(days=7), "e": start + timedelta(days=7)},
        ).scalar_one():
            start += timedelta(days=14)
    return start


def _figure(text_: str, label: str) -> str:
    """The value under `label` in the summary's grid (pdftotext -layout keeps the columns)."""
    lines = text_.splitlines()
    for i, line in enumerate(lines):
        column = line.find(label)
        if column >= 0 and i + 1 < len(lines):
            below = lines[i + 1][column:]
            return below.split("  ")[0].strip()
    raise AssertionError(f"{label!r} not in the document")


def test_the_estate_pdf_shows_the_figures_sql_counts_and_its_charts(viewer, engine, unique, tmp_path):
    start = _free_window(engine, unique)
    prefix = f"pdf-{unique}"
    _seed(engine, _jobs(prefix, start))
    params = {"from": start.isoformat() + "Z", "to": (start + timedelta(days=7)).isoformat() + "Z"}
    response = viewer.get("/reports/estate.pdf", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert re.fullmatch(r'attachment; filename="sendense-estate-report-\d{4}-\d{2}-\d{2}\.pdf"',
                        response.headers["content-disposition"])  # fmt: skip
    pdf = response.content
    assert pdf.startswith(b"%PDF-")

    bounds = {"s": start, "e": start + timedelta(days=7)}
    with engine.connect() as conn:
        counts = dict(
            conn.execute(
                text(
                    "SELECT status, COUNT(*) FROM backup_jobs WHERE created_at >= :s AND created_at < :e "
                    "GROUP BY status"
                ),
                bounds,  # fmt: skip
            ).all()
        )
    words = pdf_text(pdf, tmp_path)
    assert _figure(words, "Jobs") == str(sum(counts.values())) == "12"
    assert _figure(words, "Completed") == str(counts["completed"])
    assert _figure(words, "Failed") == str(counts["failed"])
    assert _figure(words, "Running or pending") == str(counts["running"])
    assert (
        _figure(words, "Success rate")
        == f"{100 * counts['completed'] / (counts['completed'] + counts['failed']):.1f} %"
    )
    assert f"{start:%Y-%m-%d %H:%M} to {start + timedelta(days=7):%Y-%m-%d %H:%M} (UTC)" in words
    assert "Generated " in words
    assert "disk full" in words and "NBD reset" in words  # the failures' reasons
    assert "The estate ran 200 % more backups than the week before." in words
    images = pdf_images(pdf, tmp_path)
    # Jobs per day, bytes per day, success rate per day, jobs by hour: pictures of a readable size.
    assert len(images) >= 4 and all(int(row[3]) >= 400 and int(row[4]) >= 150 for row in images), images

    html = viewer.get("/reports/estate.html", params=params)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert html.text.count('src="data:image/png;base64,') == len(images)
    assert "default-src 'none'" in html.headers["content-security-policy"]


def test_an_empty_period_still_makes_a_document(viewer, tmp_path):
    params = {"from": "1990-01-01T00:00:00Z", "to": "1990-01-02T00:00:00Z"}
    response = viewer.get("/reports/estate.pdf", params=params)
    assert response.status_code == 200
    words = pdf_text(response.content, tmp_path)
    assert _figure(words, "Jobs") == "0" and "No job was created in this period" in words
    assert pdf_images(response.content, tmp_path) == []


def test_a_machine_report_escapes_a_hostile_name_and_lists_its_jobs(viewer, engine, unique, tmp_path):
    start = _free_window(engine, unique)
    vm = f"{HOSTILE} {unique}"
    rows = _jobs(f"mrep-{unique}", start)
    for r in rows:
        r["vm"] = vm
    _seed(engine, rows)
    with engine.begin() as conn:  # the flows table's row, as the job store keeps it for jobs it creates
        conn.execute(
            text(
                "INSERT INTO machines (vm_name, repository_id, created_at, updated_at, total_jobs, successful, "
                "failed) VALUES (:vm, 'repo-a', :at, :at, 16, 12, 3)"
            ),
            {"vm": vm, "at": start},  # fmt: skip
        )
    params = {"from": start.isoformat() + "Z", "to": (start + timedelta(days=7)).isoformat() + "Z"}
    path = f"/machines/{quote(vm, safe='')}/report"
    html = viewer.get(path + ".html", params=params)
    assert html.status_code == 200, html.text
    assert "<script>" not in html.text and "<img src=http" not in html.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;script&gt; &amp; &#39;db&#39;" in html.text

    pdf = viewer.get(path + ".pdf", params=params)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    filename = re.fullmatch(r'attachment; filename="([A-Za-z0-9._-]+)"', pdf.headers["content-disposition"])
    assert filename and filename.group(1).startswith(
        "sendense-machine-script_alert_x_script_db_img_src_http_127.0.0.1_1_"
    )
    words = pdf_text(pdf.content, tmp_path)
    assert '<script>alert("x")<script>' in words  # shown as text, as named
    assert _figure(words, "Jobs") == "12" and _figure(words, "Failed") == "3"
    assert words.count("NBD reset") >= 2  # among the reasons and in the failed jobs' table
    assert len(pdf_images(pdf.content, tmp_path)) == 3  # duration, size and speed per job


def test_an_unknown_machine_is_404_and_a_bad_period_400(viewer):
    assert viewer.get("/machines/no-such-machine-anywhere/report.pdf").status_code == 404
    assert viewer.get("/machines/no-such-machine-anywhere/report.html").status_code == 404
    assert viewer.get("/reports/estate.pdf", params={"period": "0d"}).status_code == 400
    bad = viewer.get("/reports/estate.pdf", params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"})
    assert bad.status_code == 400 and "after" in bad.json()["detail"]
