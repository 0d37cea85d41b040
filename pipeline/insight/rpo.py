"""Recovery-point objective: is the last successful backup of a machine recent enough?"""

from __future__ import annotations

from datetime import datetime

from pipeline.clock import aware

__all__ = ["rpo_status"]


def rpo_status(last_success_at: datetime | None, own_rpo: int | None, default_rpo: int, now: datetime) -> dict:
    """The machine's objective (its own, else the default), the age of its last successful backup, and
    whether it is out of its objective (never backed up successfully counts as out).

    `overdue_ratio` is age ÷ objective (≥ 1 is out of RPO): what the flows table sorts by, worst first.
    """
    objective = own_rpo if own_rpo is not None else default_rpo
    if last_success_at is None:
        return {
            "rpo_seconds": objective,
            "rpo_source": "machine" if own_rpo is not None else "default",
            "last_success_at": None,
            "age_seconds": None,
            "out_of_rpo": True,
            "overdue_ratio": None,
        }
    age = max(0.0, (now - last_success_at).total_seconds())
    return {
        "rpo_seconds": objective,
        "rpo_source": "machine" if own_rpo is not None else "default",
        "last_success_at": aware(last_success_at),
        "age_seconds": round(age),
        "out_of_rpo": age > objective,
        "overdue_ratio": round(age / objective, 3) if objective > 0 else None,
    }
