"""The pushed-down rollup (InfluxDB's aggregates) equals the rollup of every point, on hostile jobs.

Each job's points are written to the real InfluxDB as the API writes them, then the same job is
summarised both ways by `JobSummarizer`: `pushdown=False` reads every point (the reference maths),
the default asks InfluxDB for aggregates. Every figure must agree within 0.5 %.
"""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from pipeline.ingest.registry import JobEntry
from pipeline.rollup.reader import JobWindow, TelemetryReader
from pipeline.rollup.summary import JobSummarizer
from pipeline.tsdb.encoding import telemetry_line

BASE_NS = (int(time.time()) - 20 * 3600) * 10**9
SECOND = 10**9


def _line(key: str, t_ns: int, speed: int, progress: float, phase: str, i: int = 0) -> str:
    return telemetry_line(
        key,
        bytes_transferred=i * 1000,
        total_bytes=10**9,
        transfer_speed_bps=speed,
        progress_percent=progress,
        current_phase=phase,
        worker_count=2,
        timestamp_ns=t_ns,
        stage_load={"network": 50.0},
    )


def _steady(n: int = 5000):
    phases = ["snapshot"] * 40 + ["transferring"] * (n - 140) + ["finalizing"] * 100
    return [
        (BASE_NS + i * SECOND, 0 if i % 50 == 0 else 10**8 + (i * 7919) % 10**7, i / n * 100, phases[i])
        for i in range(n)
    ]


def _gaps_and_returning_phases():
    points, t = [], BASE_NS
    rng = random.Random(7)
    for i in range(3000):
        t += rng.choice([SECOND, 3 * SECOND, 250_000_000]) + (3600 * SECOND if i == 1500 else 0)
        phase = ["read", "verify", "read", "merge"][(i // 400) % 4]
        points.append((t, rng.randrange(0, 5 * 10**8), i / 30, phase))
    return points


def _every_point_a_new_phase():
    return [(BASE_NS + i * 2 * SECOND, 1000 + i, i / 4, f"phase-{i % 7}") for i in range(400)]


def _all_zero():
    return [(BASE_NS + i * SECOND, 0, float(i), "waiting") for i in range(300)]


def _one_point():
    return [(BASE_NS, 12345, 50.0, "only")]


def _two_points():
    return [(BASE_NS, 100, 0.0, "start"), (BASE_NS + 90 * SECOND, 300, 100.0, "end")]


def _hostile_names():
    long_a, long_b = "x" * 100 + "A", "x" * 100 + "B"  # the same phase once cut to the column's width
    names = ['quote " and \\ back', "new\nline", "ünïcødé ✓", long_a, long_b, "sp ace,comma=eq"]
    return [(BASE_NS + i * SECOND, 5000 + i % 13, i / 6, names[(i // 37) % len(names)]) for i in range(600)]


def _out_of_order():
    points = _steady(2000)
    random.Random(3).shuffle(points)  # written shuffled: InfluxDB keeps them in time order
    return points


CASES = {
    "steady": _steady,
    "gaps and returning phases": _gaps_and_returning_phases,
    "a new phase every point": _every_point_a_new_phase,
    "zero speed throughout": _all_zero,
    "one point": _one_point,
    "two points": _two_points,
    "hostile phase names": _hostile_names,
    "written out of order": _out_of_order,
}


def _job(agent, influx, settings, name: str, points, *, disks: int = 0) -> SimpleNamespace:
    entry = JobEntry(f"push-{name}", "backup", name, "repo-push", "running")
    lines = [_line(entry.key(None), t, s, p, ph, i) for i, (t, s, p, ph) in enumerate(points)]
    for d in range(disks):  # per-disk series: far faster than the job, and never in its figures
        lines += [_line(entry.key(d), t + 1000, 9 * 10**9 + d, p, "disk", i) for i, (t, _, p, _) in enumerate(points)]
    for start in range(0, len(lines), 10_000):
        influx.write("\n".join(lines[start : start + 10_000]), rp=settings.influx.raw_rp)
    times = [t for t, *_ in points]
    first, last = datetime.fromtimestamp(min(times) / 1e9, UTC), datetime.fromtimestamp(max(times) / 1e9 + 1, UTC)
    naive = {"tzinfo": None}
    return SimpleNamespace(
        id=entry.job_id,
        vm_name=name,
        backup_type="full",
        status="completed",
        created_at=first.replace(**naive),
        started_at=first.replace(**naive),
        completed_at=last.replace(**naive),
        last_telemetry_at=last.replace(**naive),
    )


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0.005, abs_tol=0.11)


def _both_ways(influx, settings, engine, job) -> tuple[dict, dict]:
    reader = TelemetryReader(influx, settings.influx.raw_rp)
    with engine.connect() as conn:
        # Pushed down whatever the job's length (by default only jobs longer than an hour are).
        pushed, pushed_curves = JobSummarizer(reader, 100, pushdown_after=0).summarize(job, conn)
        every, every_curves = JobSummarizer(reader, 100, pushdown=False).summarize(job, conn)
    assert pushed_curves == every_curves
    return pushed, every


NUMERIC = ("duration_seconds", "peak_speed_bps", "avg_speed_bps", "min_speed_bps", "peak_speed_mbps", "avg_speed_mbps")
EXACT = ("snapshots_recorded", "bytes_transferred", "total_bytes", "max_worker_count", "final_status", "disks")


@pytest.mark.parametrize("case", list(CASES))
def test_pushed_down_rollup_equals_the_rollup_of_every_point(agent, influx, settings, engine, unique, case):
    points = CASES[case]()
    job = _job(
        agent, influx, settings, f"{unique}-{case.replace(' ', '-')}", points, disks=2 if case == "steady" else 0
    )
    pushed, every = _both_ways(influx, settings, engine, job)
    window = JobWindow(job.id, BASE_NS - SECOND, BASE_NS + 30 * 3600 * SECOND)
    assert TelemetryReader(influx, settings.influx.raw_rp).aggregates(window) is not None  # not the fallback

    for field in EXACT:
        assert pushed[field] == every[field], field
    for field in NUMERIC:
        assert _close(pushed[field], every[field]), (field, pushed[field], every[field])
    assert list(pushed["phase_durations"]) == list(every["phase_durations"])
    for phase, seconds in every["phase_durations"].items():
        assert _close(pushed["phase_durations"][phase], seconds), (phase, pushed["phase_durations"][phase], seconds)
    assert pushed["anomalies"] == every["anomalies"]
    assert pushed.get("bottleneck") == every.get("bottleneck")

    # The chart: bounded, from the first point (t 0) to the last, keeping the peak as it was.
    chart = pushed["chart_data"]
    assert 1 <= len(chart) <= 100
    assert chart[0]["t"] == 0 and chart[-1]["t"] == every["chart_data"][-1]["t"]
    assert max(p["s"] for p in chart) == every["peak_speed_bps"]
    assert [p["t"] for p in chart] == sorted(p["t"] for p in chart)
    assert pushed["chart_points_source"] == every["chart_points_source"] == len(points)


def test_points_not_written_by_the_api_are_read_one_by_one(agent, influx, settings, engine, unique):
    """A point without a phase (someone else's writer) makes InfluxDB's counts disagree: the rollup
    then reads every point, as before, and counts that one too."""
    job = _job(agent, influx, settings, f"{unique}-foreign", _steady(500))
    key = JobEntry(job.id, "backup", job.vm_name, "repo-push", "running").key(None)
    influx.write(
        f"{key} transfer_speed_bps=77i,progress_percent=50.0 {BASE_NS + 250 * SECOND + 500}", rp=settings.influx.raw_rp
    )
    reader = TelemetryReader(influx, settings.influx.raw_rp)
    window = JobWindow(job.id, BASE_NS - SECOND, BASE_NS + 600 * SECOND)
    assert reader.aggregates(window) is None
    pushed, every = _both_ways(influx, settings, engine, job)
    assert pushed == every
    assert pushed["snapshots_recorded"] == 501
