"""Pure: a period's figures against the period before it, with the change in percent and a sentence where large."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["LARGE_CHANGE", "Figures", "compare_periods"]

LARGE_CHANGE = 25.0
"""A change of at least this many percent (or success-rate points) gets a sentence."""


@dataclass(frozen=True, slots=True)
class Figures:
    """What week-over-week compares, for the estate or one machine (None: nothing to average)."""

    jobs: int
    success_rate: float | None
    avg_duration_seconds: float | None
    avg_size_bytes: float | None
    avg_speed_bps: float | None


_WORDS = {
    "jobs": ("{subject} ran {pct} {word} backups", "more", "fewer"),
    "avg_duration_seconds": ("backups of {subject} took {pct} {word}", "longer", "less time"),
    "avg_size_bytes": ("backups of {subject} moved {pct} {word} data", "more", "less"),
    "avg_speed_bps": ("backups of {subject} ran {pct} {word}", "faster", "slower"),
}


def _change(now: float | None, before: float | None) -> float | None:
    if now is None or before is None or before == 0:
        return None
    return round(100.0 * (now - before) / before, 1)


def compare_periods(subject: str, now: Figures, before: Figures, previous_label: str) -> dict:
    """Each figure now and before with its change in percent (None when the previous period has nothing to
    compare with), and a sentence per large change: "backups of db-01 took 38 % longer than the week before"."""
    figures: dict[str, Mapping] = {}
    sentences: list[str] = []
    for name in ("jobs", "success_rate", "avg_duration_seconds", "avg_size_bytes", "avg_speed_bps"):
        current, previous = getattr(now, name), getattr(before, name)
        if name == "success_rate":
            change = None if current is None or previous is None else round(current - previous, 1)
            figures[name] = {"now": current, "before": previous, "change_points": change}
            if change is not None and abs(change) >= LARGE_CHANGE:
                direction = "rose" if change > 0 else "fell"
                sentences.append(
                    f"the success rate of {subject} {direction} from {previous:.0f} % to {current:.0f} % "
                    f"compared with {previous_label}"
                )
            continue
        change = _change(current, previous)
        figures[name] = {"now": current, "before": previous, "change_percent": change}
        if change is not None and abs(change) >= LARGE_CHANGE:
            template, up, down = _WORDS[name]
            text = template.format(subject=subject, pct=f"{abs(change):.0f} %", word=up if change > 0 else down)
            sentences.append(f"{text} than {previous_label}")
    return {"figures": figures, "sentences": sentences}
