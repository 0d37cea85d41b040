"""Dashboard data shaping: API JSON → Bokeh column data (MB/s, mm:ss labels, phase bands, donut, tables, alerts)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from dashboards.app.alert_shaping import (
    SEVERITY_COLORS,
    alert_columns,
    alert_detail_text,
    count_firing,
    firing_summary,
    machine_alert_columns,
    silence_body,
    title_text,
)
from dashboards.app.shaping import (
    disk_columns,
    donut_columns,
    eta_text,
    flag_short,
    format_rate,
    history_columns,
    job_options,
    machines_columns,
    mbps,
    mmss,
    page_text,
    performance_figures,
    phase_bands,
    risk_text,
    speed_columns,
    stream_tail,
    trend_columns,
    unfinished_text,
)
from dashboards.app.table_sort import DEFAULT_SORT, SORT_CHOICES, Sort, header_label, header_tip, sort_after_click
from dashboards.app.views.summary import risk_card, risk_html
from pipeline.read.machines import MACHINE_SORTS

CHART = [
    {"t": 0, "s": 1_048_576, "p": 0.0, "phase": "snapshot"},
    {"t": 2, "s": 2_097_152, "p": 5.0, "phase": "snapshot"},
    {"t": 5, "s": 3_145_728, "p": 40.0, "phase": "transferring"},
    {"t": 65, "s": 0, "p": 100.0, "phase": "completed"},
]


def test_speed_is_converted_to_mb_per_second_with_the_job_sheets_1024_squared():
    assert mbps(1_048_576) == 1.0
    assert mbps(1_572_864) == 1.5
    assert mbps(None) == 0.0
    assert speed_columns(CHART)["mbps"] == [1.0, 2.0, 3.0, 0.0]


@pytest.mark.parametrize(("seconds", "label"), [(0, "0:00"), (5, "0:05"), (65, "1:05"), (3725, "62:05"), (-3, "0:00")])
def test_elapsed_seconds_become_mm_ss_labels(seconds, label):
    assert mmss(seconds) == label


def test_speed_columns_carry_time_label_progress_and_phase_for_the_tooltip():
    cols = speed_columns(CHART)
    assert cols["time"] == ["0:00", "0:02", "0:05", "1:05"]
    assert cols["progress"] == [0.0, 5.0, 40.0, 100.0]
    assert cols["phase"] == ["snapshot", "snapshot", "transferring", "completed"]


def test_phase_bands_cover_each_run_of_equal_phases_and_keep_a_final_single_point_visible():
    bands = phase_bands(CHART)
    assert bands["phase"] == ["snapshot", "transferring", "completed"]
    assert list(zip(bands["left"], bands["right"], strict=True)) == [(0, 5), (5, 65), (65, 66)]
    assert len(set(bands["color"])) == 3
    assert phase_bands([]) == {"left": [], "right": [], "phase": [], "color": []}


def test_a_phase_that_returns_gets_a_new_band():
    chart = [{"t": t, "s": 1, "p": 0, "phase": ph} for t, ph in [(0, "a"), (1, "b"), (2, "a"), (4, "a")]]
    assert phase_bands(chart)["phase"] == ["a", "b", "a"]
    assert phase_bands(chart)["right"] == [1, 2, 4]


def test_new_live_points_are_streamed_only_when_they_extend_the_drawn_chart():
    drawn = speed_columns(CHART[:2])
    tail = stream_tail(drawn, speed_columns(CHART))
    assert tail is not None and tail["t"] == [5, 65]
    assert stream_tail(drawn, speed_columns(CHART[:1])) is None  # shorter: re-bucketed, replace
    rebucketed = [{**p, "t": p["t"] * 2} for p in CHART]
    assert stream_tail(drawn, speed_columns(rebucketed)) is None
    assert stream_tail(speed_columns([]), speed_columns(CHART)) is None


def test_job_selector_lists_timestamp_and_type_newest_first():
    jobs = [
        {"backup_id": "a", "created_at": "2025-01-01T10:00:00Z", "type": "full"},
        {"backup_id": "b", "created_at": "2025-01-02T09:30:15+00:00", "type": "incremental"},
    ]
    assert job_options(jobs) == [("b", "2025-01-02 09:30:15 – incremental"), ("a", "2025-01-01 10:00:00 – full")]


def test_figures_of_a_rolled_up_job_are_the_summarys_own():
    history = {
        "data_source": "rolled_up",
        "status": "completed",
        "performance_metrics": {
            "peak_speed_mbps": 3.0,
            "avg_speed_mbps": 1.2,
            "duration_seconds": 65,
            "chart_data": CHART,
        },
    }
    figures = performance_figures(history)
    assert (figures["peak_mbps"], figures["avg_mbps"], figures["duration_seconds"]) == (3.0, 1.2, 65)
    assert figures["progress"] == 100.0 and figures["chart"] == CHART


def test_figures_of_a_live_job_come_from_its_points_and_current_state():
    history = {
        "data_source": "live_snapshots",
        "status": "running",
        "current_state": {"progress_percent": 40.0},
        "chart_data": CHART[:3],
    }
    figures = performance_figures(history)
    assert figures["peak_mbps"] == 3.0 and figures["avg_mbps"] == 2.0
    assert figures["duration_seconds"] == 5 and figures["progress"] == 40.0


def test_a_job_without_telemetry_keeps_the_apis_message():
    figures = performance_figures({"data_source": "none", "status": "pending", "message": "No telemetry"})
    assert figures["chart"] == [] and figures["message"] == "No telemetry" and figures["peak_mbps"] is None


def test_donut_wedges_split_the_circle_by_counts_and_centre_text_is_the_rate():
    data = donut_columns(3, 1)
    assert data["label"] == ["successful", "failed"]
    sweeps = [end - start for start, end in zip(data["start"], data["end"], strict=True)]
    assert sweeps == pytest.approx([1.5 * math.pi, 0.5 * math.pi])
    assert donut_columns(0, 0)["label"] == []
    assert donut_columns(2, 0)["label"] == ["successful"]
    assert format_rate(75.0) == "75.0%" and format_rate(None) == "—"


def test_machines_table_has_numeric_columns_and_the_rpo_status():
    machines = [
        {
            "vm_name": "web-01",
            "repository_id": "repo-a",
            "success_rate": None,
            "total_backups": 1,
            "last_backup": {"type": "full", "job_type": "backup", "status": "running", "bytes_transferred": 2_097_152},
            "rpo": {"rpo_seconds": 86400, "age_seconds": None, "out_of_rpo": True},
        },
        {
            "vm_name": "db-01",
            "repository_id": "repo-b",
            "success_rate": 90.0,
            "total_backups": 3,
            "last_backup": {},
            "rpo": {"rpo_seconds": 43200, "age_seconds": 3 * 3600 + 600, "out_of_rpo": False},
        },
    ]
    cols = machines_columns(machines)
    assert cols["last_size_mb"][0] == 2.0 and math.isnan(cols["last_size_mb"][1])
    assert math.isnan(cols["success_rate"][0]) and cols["success_rate"][1] == 90.0
    assert cols["last_type"] == ["full backup", ""]
    assert cols["rpo_status"] == ["out of RPO", "within RPO"]
    assert cols["rpo_age"] == ["never / 1d", "3h 10m / 12h"]


def test_the_risk_column_shows_the_score_by_level_with_the_reasons_as_tooltip():
    risk = {"score": 0.256, "level": "high", "reasons": ["3 of the last 10 runs failed", "speed fell 30 % over 8 runs"]}
    tip = "high risk, 26 %: 3 of the last 10 runs failed; speed fell 30 % over 8 runs"
    assert risk_text(risk) == ("26%", "high", tip)
    assert risk_text(None) == ("", "", "")
    cols = machines_columns([{"vm_name": "a", "risk": risk}, {"vm_name": "b"}])
    assert cols["risk"] == ["26%", ""] and cols["risk_level"] == ["high", ""] and cols["risk_tip"] == [tip, ""]
    assert risk_card(risk) == ("Failure risk", "high 26%", "kpi-risk") and risk_card(None)[1] == "—"


def test_the_summary_says_why_with_every_reason_escaped():
    html = risk_html({"score": 0.03, "level": "low", "reasons": ["<b>odd</b> reason", "another"]})
    assert "&lt;b&gt;odd&lt;/b&gt; reason; another" in html and "<b>odd</b>" not in html
    assert risk_html(None) == ""


def test_the_page_line_counts_from_one():
    assert page_text(100, 100, 10_000) == "Machines 101–200 of 10,000"
    assert page_text(0, 0, 0) == "No machines"


def test_unusual_runs_are_marked_short_in_the_table_with_their_sentences_as_tooltip():
    anomalies = [
        {"metric": "duration_seconds", "ratio": 2.43, "sentence": "took 2.4× longer than usual"},
        {"metric": "bytes_transferred", "ratio": 0.31, "sentence": "transferred 0.3× the usual amount of data"},
        {"metric": "avg_speed_bps", "ratio": 0.4, "sentence": "ran at 0.4× the usual speed"},
    ]
    cols = history_columns([{"backup_id": "a", "anomalies": anomalies}])
    assert cols["flags"] == ["⚠ duration 2.4×, data 0.3×, speed 0.4× usual"]
    assert cols["flag_sentences"] == [
        "⚠ took 2.4× longer than usual; transferred 0.3× the usual amount of data; ran at 0.4× the usual speed"
    ]
    assert history_columns([{"backup_id": "b", "anomalies": []}])["flags"] == [""]
    # A flag the dashboard does not know by its metric keeps its sentence.
    assert flag_short([{"metric": "new_metric", "ratio": 3.0, "sentence": "did something"}]) == "⚠ did something"


TREND = [
    {"created_at": "2026-01-01T00:00:00Z", "status": "completed", "size_bytes": 3 * 1_048_576, "duration_seconds": 600},
    {"created_at": "2026-01-02T00:00:00Z", "status": "failed", "size_bytes": 1_048_576, "duration_seconds": 60},
    {"created_at": "2026-01-03T00:00:00Z", "status": "cancelled", "size_bytes": 0, "duration_seconds": 6},
    {"created_at": "2026-01-04T00:00:00Z", "status": "pending", "size_bytes": 0, "duration_seconds": None},
    {"created_at": "2026-01-05T00:00:00Z", "status": "running", "size_bytes": 1_048_576, "duration_seconds": 30},
]


def test_trends_draw_only_finished_jobs_not_a_running_jobs_partial_size_and_duration():
    cols = trend_columns(TREND)
    assert cols["status"] == ["completed", "failed", "cancelled"]
    assert cols["size_mb"] == [3.0, 1.0, 0.0]
    assert cols["duration_min"] == [10.0, 1.0, 0.1]
    assert all(len(values) == 3 for values in cols.values())


def test_the_trends_say_which_jobs_they_leave_out_until_finished():
    assert unfinished_text(TREND) == "Not in the trends until finished: 1 running job and 1 pending job."
    assert unfinished_text(TREND[:3]) == ""
    assert unfinished_text([TREND[4]] * 2) == "Not in the trends until finished: 2 running jobs."


def test_every_sort_the_api_takes_is_offered_both_ways():
    values = [value for value, _label in SORT_CHOICES]
    assert sorted({Sort.parse(v).key for v in values}) == sorted(MACHINE_SORTS)
    assert len(values) == 2 * len(MACHINE_SORTS) == len(set(values))
    assert DEFAULT_SORT.value in values
    assert DEFAULT_SORT.key == "rpo" and DEFAULT_SORT.descending  # most overdue first
    assert dict(SORT_CHOICES)["vm_name:desc"] == "VM name: Z → A"


def test_a_header_click_sorts_by_that_column_and_a_second_click_reverses_it():
    by_name = sort_after_click(DEFAULT_SORT, "vm_name")
    assert by_name == Sort("vm_name", False) and by_name.order == "asc"
    assert sort_after_click(by_name, "vm_name") == Sort("vm_name", True)
    assert sort_after_click(Sort("vm_name", True), "vm_name") == Sort("vm_name", False)
    # Another column starts at its own first order: newest job first, most overdue first.
    assert sort_after_click(by_name, "last_backup") == Sort("last_backup", True)
    assert sort_after_click(Sort("rpo", False), "rpo") == Sort("rpo", True)
    assert Sort.parse(Sort("success_rate", False).value) == Sort("success_rate", False)


def test_the_header_shows_the_sort_with_an_arrow_only_on_its_column():
    current = Sort("vm_name", False)
    assert header_label("VM", "vm_name", current) == "VM ▲"
    assert header_label("VM", "vm_name", Sort("vm_name", True)) == "VM ▼"
    assert header_label("Backups", "total_backups", current) == "Backups"
    assert header_label("Repository", None, current) == "Repository"
    assert header_tip("vm_name", current) == "Sorted by VM name, A → Z; click for Z → A"
    assert header_tip("rpo", current) == "Click to sort by RPO, most overdue first"
    assert header_tip(None, current) == "The API cannot sort by this column"


def test_the_eta_line_says_when_and_how_long_or_why_not():
    assert eta_text({"eta_seconds": 600, "eta_at": "2026-11-29T22:51:03+00:00"}) == "ETA 22:51:03 UTC (in 10m 00s)"
    assert eta_text({"eta_seconds": None, "eta_reason": "below 5 % progress"}) == "no ETA yet (below 5 % progress)"


def test_disk_curves_become_one_line_per_disk():
    cols = disk_columns(
        [{"disk_index": 0, "chart_data": [{"t": 0, "s": 1_048_576}]}, {"disk_index": 1, "chart_data": []}]
    )
    assert cols["label"] == ["Disk 0", "Disk 1"] and cols["ys"] == [[1.0], []]


# --- alerts ------------------------------------------------------------------------------------------

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


def _alert(alert_id: int, severity: str, state: str = "firing", vm: str | None = "pgtest1", **extra) -> dict:
    return {
        "id": alert_id,
        "rule": "job_failed",
        "state": state,
        "severity": severity,
        "vm_name": vm,
        "summary": "Backup of pgtest1 failed: NBD reset",
        "started_at": "2026-12-03T08:50:00Z",
        "resolved_at": "2026-12-03T11:35:00Z" if state == "resolved" else None,
        "silenced": False,
        "acknowledgement": None,
        **extra,
    }


def test_the_title_counts_firing_alerts_per_severity_worst_first_and_leaves_out_none():
    assert title_text({"critical": 2, "warning": 3, "info": 0}) == "(2 critical, 3 warning) Sendense Telemetry"
    assert title_text({"critical": 0, "warning": 0, "info": 1}) == "(1 info) Sendense Telemetry"
    assert title_text({"critical": 0, "warning": 0, "info": 0}) == "Sendense Telemetry"
    assert title_text({}) == "Sendense Telemetry"


def test_alert_rows_keep_the_apis_order_with_severity_colours_and_their_state_in_words():
    acknowledged = {"at": "2026-12-03T09:10:00Z", "by": "jane", "comment": "on it"}
    rows = alert_columns(
        [
            _alert(7, "critical", acknowledgement=acknowledged, silenced=True),
            _alert(3, "info", vm=None, rule="pipeline_unhealthy"),
            _alert(5, "warning", state="resolved"),
        ],
        NOW,
    )
    assert rows["id"] == [7, 3, 5]
    assert rows["severity"] == ["CRITICAL", "INFO", "WARNING"]
    assert rows["sev_bg"] == [SEVERITY_COLORS["critical"][0], SEVERITY_COLORS["info"][0], SEVERITY_COLORS["warning"][0]]
    assert SEVERITY_COLORS["critical"][0] == "#c62828" and SEVERITY_COLORS["info"][0] == "#1565c0"
    assert rows["rule"] == ["Job failed", "Pipeline unhealthy", "Job failed"]
    assert rows["machine"] == ["pgtest1", "pipeline", "pgtest1"]
    assert rows["vm_name"] == ["pgtest1", "", "pgtest1"]
    assert rows["since"] == ["2026-12-03 08:50"] * 3
    assert rows["since_detail"] == ["for 3h 10m", "for 3h 10m", "resolved 25m ago"]
    assert rows["ack_by"] == ["jane · 12-03 09:10", "", ""]
    assert rows["ack_comment"] == ["on it", "", ""]
    assert rows["silenced"] == ["silenced", "", ""]


def test_an_alert_fired_seconds_ago_is_firing_for_less_than_a_minute():
    rows = alert_columns([_alert(1, "warning", started_at="2026-12-03T11:59:30Z")], NOW)
    assert rows["since_detail"] == ["for <1m"]


def test_the_detail_tells_the_alerts_whole_story():
    ack = {"at": "2026-12-03T09:10:00Z", "by": "jane", "comment": "restarting the agent"}
    heading, story = alert_detail_text(_alert(1, "critical", acknowledgement=ack, silenced=True), NOW)
    assert heading == "CRITICAL · Job failed · pgtest1"
    assert story == (
        "Backup of pgtest1 failed: NBD reset. Firing since 2026-12-03 08:50:00 UTC (3h 10m). "
        "Acknowledged by jane at 2026-12-03 09:10:00 UTC: “restarting the agent”. "
        "Silenced: it notifies nobody while the silence lasts."
    )
    heading, story = alert_detail_text(_alert(2, "info", state="resolved", vm=None), NOW)
    assert heading == "INFO · Job failed · the pipeline"
    assert story.endswith("Resolved at 2026-12-03 11:35:00 UTC.")


def test_firing_alerts_are_counted_per_machine_and_severity_leaving_out_resolved_and_pipeline_ones():
    counts = count_firing(
        [
            _alert(1, "critical"),
            _alert(2, "warning"),
            _alert(3, "warning", vm="other"),
            _alert(4, "critical", state="resolved"),
            _alert(5, "critical", vm=None),
        ]
    )
    assert counts == {
        "pgtest1": {"critical": 1, "warning": 1, "info": 0},
        "other": {"critical": 0, "warning": 1, "info": 0},
    }


def test_a_machines_alert_cell_has_the_count_the_worst_severity_its_colour_and_the_split_as_tooltip():
    assert firing_summary({"critical": 1, "warning": 2, "info": 0}) == (
        3,
        "critical",
        "3 firing alerts: 1 critical, 2 warning",
    )
    assert firing_summary(None) == (0, "", "No alert is firing")
    columns = machine_alert_columns(["a", "b", "c"], {"a": {"critical": 0, "warning": 1, "info": 1}, "c": {}})
    assert columns["alerts"] == [2, 0, 0]
    assert columns["alerts_worst"] == ["warn", "", ""]
    assert columns["alerts_bg"][0] == SEVERITY_COLORS["warning"][0]
    assert columns["alerts_tip"] == ["2 firing alerts: 1 warning, 1 info", "No alert is firing", "No alert is firing"]


def test_a_silence_covers_the_machine_the_rule_or_both_and_needs_a_reason():
    alert = _alert(1, "critical")
    both = silence_body(alert, machine=True, rule=True, duration_seconds=3600, reason=" disk swap ", by="jane")
    assert both == {
        "vm_name": "pgtest1",
        "rule": "job_failed",
        "duration_seconds": 3600,
        "reason": "disk swap",
        "created_by": "jane",
    }
    machine = silence_body(alert, machine=True, rule=False, duration_seconds=60, reason="x", by="jane")
    assert "rule" not in machine and machine["vm_name"] == "pgtest1"
    with pytest.raises(ValueError, match="Choose what to silence"):
        silence_body(alert, machine=False, rule=False, duration_seconds=60, reason="x", by="jane")
    with pytest.raises(ValueError, match="Say why"):
        silence_body(alert, machine=True, rule=True, duration_seconds=60, reason="  ", by="jane")
    # A pipeline alert has no machine: only its rule can be silenced.
    with pytest.raises(ValueError, match="Choose what to silence"):
        silence_body(_alert(2, "critical", vm=None), machine=True, rule=False, duration_seconds=60, reason="x", by="j")


def test_a_since_answer_is_appended_to_the_kept_chart_and_a_whole_one_replaces_it():
    from dashboards.app.shaping import LIVE_KEPT_POINTS, merge_live

    kept = [{"t": 0, "s": 1, "p": 0.0, "phase": "a"}, {"t": 5, "s": 2, "p": 1.0, "phase": "a"}]
    new = {"data_source": "live_snapshots", "chart_data": [{"t": 10, "s": 3, "p": 2.0, "phase": "a"}]}
    merged, cursor = merge_live(kept, {**new, "since": "100", "cursor": "200"})
    assert [p["t"] for p in merged["chart_data"]] == [0, 5, 10] and cursor == "200"
    whole, cursor = merge_live(kept, {**new, "cursor": "300"})  # no `since`: the whole chart
    assert [p["t"] for p in whole["chart_data"]] == [10] and cursor == "300"
    rolled, cursor = merge_live(kept, {"data_source": "rolled_up", "performance_metrics": {}})
    assert cursor is None and "chart_data" not in rolled
    long = [{"t": i, "s": 1, "p": 0.0, "phase": "a"} for i in range(LIVE_KEPT_POINTS)]
    _, cursor = merge_live(long, {**new, "since": "1", "cursor": "2"})
    assert cursor is None  # grown past the bound: read whole (in buckets) next time


def test_live_disk_curves_are_kept_and_extended_by_since_answers():
    from dashboards.app.shaping import LIVE_DISK_KEPT_POINTS, merge_disks

    kept = {0: [{"t": 0, "s": 1, "p": 0.0}], 1: [{"t": 0, "s": 2, "p": 0.0}, {"t": 5, "s": 2, "p": 1.0}]}
    new = {
        "data_source": "live_snapshots",
        "disks": [
            {"disk_index": 0, "chart_data": []},
            {"disk_index": 1, "chart_data": [{"t": 10, "s": 3, "p": 2.0}]},
            {"disk_index": 2, "chart_data": [{"t": 10, "s": 4, "p": 2.0}]},  # a disk new since the last answer
        ],
    }
    merged, cursor = merge_disks(kept, {**new, "since": "0:1,1:2", "cursor": "0:1,1:3,2:3"})
    curves = {d["disk_index"]: [p["t"] for p in d["chart_data"]] for d in merged["disks"]}
    assert curves == {0: [0], 1: [0, 5, 10], 2: [10]} and cursor == "0:1,1:3,2:3"
    whole, cursor = merge_disks(kept, {**new, "cursor": "0:9"})  # no `since`: whole curves replace the kept
    assert [len(d["chart_data"]) for d in whole["disks"]] == [0, 1, 1] and cursor == "0:9"
    rolled, cursor = merge_disks(kept, {"data_source": "rolled_up", "disks": []})
    assert rolled["disks"] == [] and cursor is None
    long = {1: [{"t": i, "s": 1, "p": 0.0} for i in range(LIVE_DISK_KEPT_POINTS)]}
    _, cursor = merge_disks(long, {**new, "since": "1:1", "cursor": "1:2"})
    assert cursor is None  # a curve grown past the bound: read whole (in buckets) next time


def test_only_disk_lines_with_new_points_are_patched():
    from dashboards.app.shaping import disk_patch

    before = disk_columns([{"disk_index": 0, "chart_data": [{"t": 0, "s": 0}]}, {"disk_index": 1, "chart_data": []}])
    grown = disk_columns(
        [{"disk_index": 0, "chart_data": [{"t": 0, "s": 0}]}, {"disk_index": 1, "chart_data": [{"t": 3, "s": 2**20}]}]
    )
    assert disk_patch(before, grown) == {"xs": [(1, [3])], "ys": [(1, [1.0])]}
    assert disk_patch(grown, grown) == {}
    third = disk_columns([*({"disk_index": i, "chart_data": []} for i in range(3))])
    assert disk_patch(before, third) is None  # another disk: the lines are replaced
