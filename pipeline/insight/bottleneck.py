"""Which stage of the data path limits a job: the busiest of source read, processing, network, target write."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["LABELS", "bottleneck"]

LABELS = {"source_read": "source", "processing": "processing", "network": "network", "target_write": "target"}
"""How operators name the stages (as backup consoles show them)."""


def bottleneck(loads: Mapping[str, float | None]) -> dict | None:
    """The busiest stage of `loads` ({stage: % busy}), or None when no stage reported.

    `{"stage": "target_write", "label": "target", "percent": 78, "text": "Bottleneck: target 78 %",
    "loads": {stage: %}}`.
    """
    known = {stage: round(float(value), 1) for stage, value in loads.items() if value is not None}
    if not known:
        return None
    stage = max(known, key=lambda s: (known[s], s))
    percent = round(known[stage])
    return {
        "stage": stage,
        "label": LABELS.get(stage, stage),
        "percent": percent,
        "text": f"Bottleneck: {LABELS.get(stage, stage)} {percent} %",
        "loads": known,
    }
