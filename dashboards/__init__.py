"""The operators' dashboard (Bokeh server). Not built yet: it is the subject of issue 3."""

from __future__ import annotations

import logging

__all__ = ["AVAILABLE", "serve"]

AVAILABLE = False


def serve(settings, port: int | None = None) -> int:
    """Say plainly that there is no dashboard yet, instead of pretending to serve one."""
    logging.getLogger("sendense.dashboard").error(
        "the operators' dashboard is not built yet (issue 3); use the API or Grafana meanwhile"
    )
    return 2
