"""Validation bounds of what agents send, and the ids the server makes."""

from __future__ import annotations

import msgspec
import pytest

from pipeline.ingest.models import CreateBackup, TelemetryUpdate, server_job_id
from pipeline.settings import load_settings

UPDATE = b'{"bytes_transferred":1,"total_bytes":2,"transfer_speed_bps":3,"progress_percent":4.5}'


def test_minimal_update_defaults_to_running():
    update = msgspec.json.decode(UPDATE, type=TelemetryUpdate)
    assert update.status == "running" and update.disk_index is None and update.current_phase == ""


@pytest.mark.parametrize(
    "name",
    ["vm 1,a=b \"x\" 'y'", "SQL Server (prod)", "файл-сервер 01", "o'brien-dc", "x" * 255, "emoji 🚀 vm"],
)
def test_real_world_vm_names_are_accepted(name):
    body = msgspec.json.encode({"vm_name": name, "backup_type": "full", "repository_id": "r"})
    assert msgspec.json.decode(body, type=CreateBackup).vm_name == name


@pytest.mark.parametrize("name", ["", "x" * 256, "a\nb", "a\rb", "a\x85b", "a\u2028b", "a\\b", "a/b", "\x7f"])
def test_unsafe_vm_names_are_refused(name):
    body = msgspec.json.encode({"vm_name": name, "backup_type": "full", "repository_id": "r"})
    with pytest.raises(msgspec.ValidationError, match="vm_name"):
        msgspec.json.decode(body, type=CreateBackup)


@pytest.mark.parametrize(
    ("vm_name", "expected"),
    [("pgtest1", "backup-pgtest1-7"), ("Café (prod)", "backup-Cafe-prod-7"), ("файл", "backup-vm-7")],
)
def test_server_job_id_is_safe_ascii(vm_name, expected):
    assert server_job_id("backup", vm_name, 7) == expected


def test_settings_name_the_malformed_variable(monkeypatch):
    monkeypatch.setenv("SENDENSE_API_PORT", "eighty")
    with pytest.raises(ValueError, match="SENDENSE_API_PORT"):
        load_settings()


def test_tokens_are_comma_separated(monkeypatch):
    monkeypatch.setenv("SENDENSE_AGENT_TOKENS", " a, b ,,")
    settings = load_settings()
    assert settings.api.agent_tokens == ("a", "b") and settings.api.auth_enabled


@pytest.mark.parametrize("job_id", ["job-1\n", "job 1", "", "-job", "j" * 256, "jöb"])
def test_unsafe_job_ids_are_refused(job_id):
    body = msgspec.json.encode({"vm_name": "v", "backup_type": "full", "repository_id": "r", "backup_id": job_id})
    with pytest.raises(msgspec.ValidationError, match="backup_id"):
        msgspec.json.decode(body, type=CreateBackup)
