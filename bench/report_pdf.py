"""Report documents over a large estate through the real API: the 30-day estate PDF beside the JSON estate report.

What it measures
    10,000 machines and 1,000,000 jobs spread over the last 347 days (one every 30 s: about 86,000 in the last 30
    days; bench/estate.py's loader, counters filled, estate_hours refreshed once as the scheduler would). Then,
    against the real API (granian), in the same run, p50 and worst of `--requests` each of
      * GET /reports/estate?period=30d (the JSON the document is made from: the reference);
      * GET /reports/estate.html?period=30d and GET /reports/estate.pdf?period=30d (target < 10 s, < 5 MB);
      * GET /machines/{vm}/report.pdf?period=30d and ?period=366d (all of its 100 jobs; target < 2 s);
    with each PDF's bytes, pages (pdfinfo) and pictures (pdfimages): a month of a large estate summarises in a few
    pages whatever its number of jobs.

Usage
    .venv/bin/python bench/report_pdf.py [--machines 10000] [--jobs-per-machine 100] [--requests 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c
import httpx
from estate import load
from sqlalchemy import text


def _timed(client: httpx.Client, url: str, params: dict, n: int) -> tuple[list[float], bytes]:
    times, body = [], b""
    for _ in range(n):
        t = time.perf_counter()
        response = client.get(url, params=params)
        times.append(time.perf_counter() - t)
        response.raise_for_status()
        body = response.content
    return times, body


def _pdf_facts(pdf: bytes) -> tuple[str, str]:
    """Pages and pictures of a PDF, by poppler's pdfinfo and pdfimages."""
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        Path(f.name).write_bytes(pdf)
        info = subprocess.run(["pdfinfo", f.name], capture_output=True, text=True, check=True).stdout
        images = subprocess.run(["pdfimages", "-list", f.name], capture_output=True, text=True, check=True).stdout
    pages = next((line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")), "?")
    pictures = sum(1 for line in images.splitlines()[2:] if line.split()[2:3] == ["image"])
    return pages, str(pictures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=10_000)
    parser.add_argument("--jobs-per-machine", type=int, default=100)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--save", type=Path, help="directory to write the last estate and machine PDFs to (to look at)")
    args = parser.parse_args()
    prefix = c.run_id("reportpdf")
    rows = []
    with c.bench_stack() as stack, c.api_process(stack, "granian"):
        load(prefix, args.machines, args.jobs_per_machine, spacing=30)
        from pipeline.reports.store import EstateHoursStore

        engine = c.mysql_engine()
        t = time.perf_counter()
        EstateHoursStore(engine).refresh()
        # Again, as the scheduler's next refresh would: the load marked every job changed outside the pipeline
        # after the first one's watermark, and a report computes the hours changed since then on the spot.
        EstateHoursStore(engine).refresh()
        c.log(f"estate_hours refreshed in {time.perf_counter() - t:.0f} s")
        with engine.connect() as conn:
            in_month = conn.execute(
                text("SELECT COUNT(*) FROM backup_jobs WHERE created_at >= UTC_TIMESTAMP() - INTERVAL 30 DAY")
            ).scalar_one()
        engine.dispose()
        base = f"{stack.api_url}/api/v1"
        vm = f"{prefix}-vm-{args.machines // 2:05d}"
        try:
            with httpx.Client(headers={"Authorization": f"Bearer {stack.viewer_token}"}, timeout=600) as client:
                client.get(base + "/reports/estate.pdf", params={"period": "1d"}).raise_for_status()  # warm-up
                for name, path, params, target in (
                    ("GET /reports/estate?period=30d (JSON, reference)", "/reports/estate", {"period": "30d"}, None),
                    ("GET /reports/estate.html?period=30d", "/reports/estate.html", {"period": "30d"}, None),
                    ("GET /reports/estate.pdf?period=30d", "/reports/estate.pdf", {"period": "30d"}, 10.0),
                    ("GET /machines/{vm}/report.pdf?period=30d", f"/machines/{vm}/report.pdf", {"period": "30d"}, 2.0),
                    ("GET /machines/{vm}/report.pdf?period=366d", f"/machines/{vm}/report.pdf", {"period": "366d"},
                     2.0),
                ):  # fmt: skip
                    times, body = _timed(client, base + path, params, args.requests)
                    pages, pictures = _pdf_facts(body) if path.endswith(".pdf") else ("-", "-")
                    if args.save and path.endswith(".pdf"):
                        args.save.mkdir(parents=True, exist_ok=True)
                        (args.save / f"{path.strip('/').replace('/', '_')}-{params['period']}.pdf").write_bytes(body)
                    met = "-" if target is None else c.verdict(max(times) < target and len(body) < 5e6)
                    rows.append([name, f"{sorted(times)[len(times) // 2]:.2f}", f"{max(times):.2f}",
                                 f"{len(body):,}", pages, pictures, met])  # fmt: skip
        finally:
            if not args.keep_data:
                c.cleanup_jobs(prefix)
                with c.mysql_engine().begin() as conn:
                    conn.execute(text("DELETE FROM machines WHERE vm_name LIKE :like"), {"like": f"{prefix}-vm-%"})
    print(c.machine_note())
    print(
        c.table(
            ["request", "p50 s", "worst s", "bytes", "pages", "pictures", "target"],
            rows,
            f"\n{args.machines:,} machines, {args.machines * args.jobs_per_machine:,} jobs over "
            f"{args.machines * args.jobs_per_machine * 30 / 86400:.0f} days "
            f"({in_month:,} in the last 30 days): {args.requests} requests each; "
            "targets: estate PDF < 10 s and < 5 MB, machine PDF < 2 s",
        )
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("SENDENSE_MYSQL_QUERY_TIMEOUT", "3600")
    sys.exit(main())
