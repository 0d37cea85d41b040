"""Report documents over HTTP: the PDF and HTML answers, their headers and their OpenAPI description."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from anyio import CapacityLimiter, to_thread
from litestar import Response
from litestar.openapi import ResponseSpec

from pipeline.reports.render import html_to_pdf, pdf_filename

__all__ = ["Format", "document_response", "document_responses"]

Format = Literal["html", "pdf"]

# The HTML may be opened in a browser from the API's origin: it runs nothing and loads nothing but its charts.
_HTML_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
# Renders at once per process, apart from the worker threads every other handler reads the stores in: a burst of
# PDF requests waits its turn instead of taking every thread (the work is CPU-bound; more at once is not faster).
_RENDERS = CapacityLimiter(2)


def document_responses(kind: Format) -> dict[int, ResponseSpec]:
    """The 200 of a document operation in the OpenAPI document: binary PDF or HTML text."""
    if kind == "pdf":
        return {
            200: ResponseSpec(
                data_container=bytes,
                media_type="application/pdf",
                generate_examples=False,
                description="The report as a PDF (A4), charts as pictures; a download",
            )
        }
    return {
        200: ResponseSpec(
            data_container=str,
            media_type="text/html",
            generate_examples=False,
            description="The report as one HTML page (charts embedded), the PDF's source",
        )
    }


async def document_response(
    make_html: Callable[[], str], kind: Format, what: str, name: str, zone: ZoneInfo
) -> Response:
    """Render in a worker thread (matplotlib and WeasyPrint are CPU-bound: the event loop goes on serving),
    with a file name made only of safe characters."""
    html = await to_thread.run_sync(make_html, limiter=_RENDERS)
    day = datetime.now(UTC).astimezone(zone).date().isoformat()
    filename = pdf_filename(what, name, day) + f".{kind}"
    if kind == "html":
        return Response(
            html,
            media_type="text/html; charset=utf-8",
            headers={
                "Content-Disposition": f'inline; filename="{filename}"',
                "Content-Security-Policy": _HTML_POLICY,
                "X-Content-Type-Options": "nosniff",
            },
        )
    pdf = await to_thread.run_sync(html_to_pdf, html, limiter=_RENDERS)
    return Response(
        pdf, media_type="application/pdf", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
