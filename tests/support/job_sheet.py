"""The job sheet's performance_metrics contract: every field with its JSON type, and our additions."""

from __future__ import annotations

__all__ = ["ADDED_FIELDS", "JOB_SHEET_FIELDS"]

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
