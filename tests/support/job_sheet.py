"""The job sheet's performance_metrics contract: every field with its JSON type, and our additions."""

from __future__ import annotations

__all__ = ["ADDED_FIELDS", "EXAMPLE_METRICS", "JOB_SHEET_FIELDS"]

# Fields of the job sheet's original performance_metrics: none may be renamed, retyped or removed.
JOB_SHEET_FIELDS: dict[str, type | tuple[type, ...]] = {
    "duration_seconds": int,
    "snapshots_recorded": int,
    "peak_speed_bps": int,
    "avg_speed_bps": int,
    "min_speed_bps": int,
    "peak_speed_mbps": float,
    "avg_speed_mbps": float,
    "chart_data": list,
}

# Fields this project adds.
ADDED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "avg_speed_method": str,
    "bytes_transferred": int,
    "total_bytes": int,
    "max_worker_count": (int, type(None)),
    "phase_durations": dict,
    "final_status": str,
    "chart_points_source": int,
    "disks": list,
}

# The job sheet's own example summary (its "Example JSON Structure"), as its rollup writes it.
EXAMPLE_METRICS: dict = {
    "duration_seconds": 62,
    "snapshots_recorded": 3,
    "peak_speed_bps": 336392246,
    "avg_speed_bps": 280000000,
    "min_speed_bps": 200000000,
    "peak_speed_mbps": 320.8,
    "avg_speed_mbps": 267.03,
    "chart_data": [
        {"t": 0, "s": 200000000, "p": 10.5, "phase": "copying"},
        {"t": 30, "s": 336392246, "p": 50.2, "phase": "copying"},
        {"t": 62, "s": 0, "p": 100, "phase": "completed"},
    ],
}
