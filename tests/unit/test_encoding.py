"""Line-protocol encoding and InfluxQL quoting, without a server."""

from __future__ import annotations

import pytest

from pipeline.tsdb.encoding import TELEMETRY, encode_summary, phase_field, series_key, telemetry_line
from pipeline.tsdb.influx import quote_ident, validate_duration


def test_series_key_escapes_spaces_commas_and_equals_in_tags():
    key = series_key(TELEMETRY, {"job_id": "j-1", "vm_name": "vm 1,a=b \"x\" 'y'", "repository_id": "r"})
    assert key == "job_telemetry,job_id=j-1,repository_id=r,vm_name=vm\\ 1\\,a\\=b\\ \"x\"\\ 'y'"


def test_phase_string_is_escaped_as_a_string_field():
    assert phase_field('say "hi" \\ now') == 'current_phase="say \\"hi\\" \\\\ now"'


def test_telemetry_line_types_every_field():
    line = telemetry_line(
        "m,job_id=j",
        bytes_transferred=10,
        total_bytes=20,
        transfer_speed_bps=5,
        progress_percent=50,
        current_phase="transferring",
        worker_count=4,
        timestamp_ns=123,
    )
    assert line == (
        'm,job_id=j bytes_transferred=10i,current_phase="transferring",progress_percent=50.0,'
        "total_bytes=20i,transfer_speed_bps=5i,worker_count=4i 123"
    )


def test_telemetry_line_omits_unknown_worker_count():
    line = telemetry_line(
        "m",
        bytes_transferred=0,
        total_bytes=0,
        transfer_speed_bps=0,
        progress_percent=0.5,
        current_phase="",
        worker_count=None,
        timestamp_ns=1,
    )
    assert "worker_count" not in line and "progress_percent=0.5" in line


def test_summary_line_keeps_job_id_as_a_field_not_a_tag():
    line = encode_summary({"vm_name": "a b", "status": "completed"}, {"job_id": "j-1", "avg_speed_bps": 3}, 99)
    assert line == 'job_summary,status=completed,vm_name=a\\ b avg_speed_bps=3i,job_id="j-1" 99'


@pytest.mark.parametrize(
    ("name", "quoted"), [("sendense", '"sendense"'), ('we"ird', '"we\\"ird"'), ("back\\slash", '"back\\\\slash"')]
)
def test_quote_ident(name, quoted):
    assert quote_ident(name) == quoted


def test_quote_ident_refuses_control_characters():
    with pytest.raises(ValueError):
        quote_ident("a\nb")


@pytest.mark.parametrize("good", ["30d", "1h30m", "52w", "INF", "90s"])
def test_durations_accepted(good):
    assert validate_duration(good) == good


@pytest.mark.parametrize("bad", ["30 days", "", "1d; DROP DATABASE x", "-1d", "inf"])
def test_durations_refused(bad):
    with pytest.raises(ValueError):
        validate_duration(bad)
