"""The OpenAPI document against the running API: it validates, schemathesis finds no disagreement in
more than 1,000 generated requests, and a client generated from it does a job's whole life."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from openapi_spec_validator import validate

from tests.support.devstack import DevStack

SCHEMA_PATH = "/api/v1/schema/openapi.json"
# Checks of every response (schemathesis's names); `all` would add stateful checks this API does not
# model (links between operations) and authorisation probes the auth tests already make.
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
]


@pytest.fixture(scope="module")
def document(api: str) -> dict:
    return httpx.get(f"{api}{SCHEMA_PATH}", timeout=30).raise_for_status().json()


def test_document_is_valid_openapi_3_1(document: dict) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_operation_documents_its_bodies_and_statuses(document: dict) -> None:
    expected = {
        ("post", "/api/v1/telemetry/{job_type}/{job_id}"): {
            "200",
            "202",
            "400",
            "401",
            "403",
            "404",
            "409",
            "413",
            "503",
        },
        ("post", "/api/v1/telemetry/batch"): {"202", "400", "401", "403", "413", "503"},
        ("post", "/api/v1/backups"): {"201", "400", "401", "403", "409", "413", "503"},
        ("put", "/api/v1/machines/{vm_name}/rpo"): {"200", "400", "401", "403", "404", "413", "503"},
        ("get", "/api/v1/telemetry/history/{job_id}"): {"200", "400", "401", "404", "503"},
        ("get", "/api/v1/health/ready"): {"200", "503"},
    }
    for (method, path), statuses in expected.items():
        operation = document["paths"][path][method]
        assert set(operation["responses"]) == statuses, (method, path)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                schema = response["content"]["application/json"]["schema"]
                assert schema != {"type": "object"}, (method, path, status)
                if status.startswith(("4", "5")) and path != "/api/v1/health/ready":
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
            if method in ("post", "put"):
                body = operation["requestBody"]["content"]["application/json"]
                assert body["schema"]["allOf"][0]["$ref"].startswith("#/components/schemas/"), (method, path)
                assert body["schema"]["examples"], (method, path)
    history = document["paths"]["/api/v1/telemetry/history/{job_id}"]["get"]["responses"]["200"]
    assert history["content"]["application/json"]["schema"]["discriminator"]["propertyName"] == "data_source"
    assert document["components"]["securitySchemes"]["BearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An agent token (read and write) or a viewer token (read only).",
    }
    assert document["security"] == [{"BearerToken": []}]


def test_every_body_over_its_limit_is_refused_as_documented(document: dict, api: str, stack: DevStack) -> None:
    """A body over any limit (9 MiB: more than the batch's 8) is answered 413 with the Error body, by
    every operation that takes a body, and each of them documents that 413."""
    headers = {"Authorization": f"Bearer {stack.agent_token}", "Content-Type": "application/json"}
    body = b'{"x": "' + b"a" * (9 * 1024 * 1024) + b'"}'
    checked = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "requestBody" not in operation:
                continue
            assert "413" in operation["responses"], (method, path)
            url = api + path.replace("{job_type}", "backup").replace("{job_id}", "x").replace("{vm_name}", "x")
            answer = httpx.request(method, url, content=body, headers=headers, timeout=30)
            assert answer.status_code == 413, (method, path, answer.status_code, answer.text[:200])
            assert answer.json()["status_code"] == 413
            checked.append(operation["operationId"])
    assert len(checked) == 4, checked


def test_bounds_in_the_document_are_the_validators(document: dict) -> None:
    update = document["components"]["schemas"]["TelemetryUpdate"]
    assert update["additionalProperties"] is False
    assert update["properties"]["disk_index"]["anyOf"][0] == {"type": "integer", "minimum": 0, "maximum": 255}
    assert update["properties"]["bytes_transferred"]["maximum"] == 2**53 - 1
    assert "\\Z" not in json.dumps(document), "patterns must be ECMA-262, the dialect of JSON Schema"


def test_schemathesis_finds_no_disagreement(api: str, stack: DevStack, document: dict, tmp_path: Path) -> None:
    """Over 1,000 generated requests (valid and invalid) across every operation: no 5xx, every status,
    header and body as documented, invalid input refused, valid input taken."""
    report = tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{api}{SCHEMA_PATH}",
        "--header",
        f"Authorization: Bearer {stack.agent_token}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "120",
        "--seed",
        "20261129",
        # One worker: hypothesis parses lambdas with `ast`, which Python 3.11.7 gets wrong in threads
        # ("AST constructor recursion depth mismatch", CPython gh-106905).
        "--workers",
        "1",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]
    # Run from the test's own directory: schemathesis keeps a crash cache in `.schemathesis/` there.
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, _failures(run.stdout) + run.stderr[-2000:]
    summary = json.loads(report.read_text())
    cases = _generated_cases(summary)
    operations = summary["operations"]
    # Shown with `pytest -s`: the figures the issue's closing note quotes.
    print(f"schemathesis: {cases} generated cases, {operations['tested']} of {operations['total']} operations")
    assert cases >= 1000, f"only {cases} cases generated: {run.stdout[-3000:]}"
    assert operations["tested"] == operations["total"] == _operation_count(document), operations
    assert summary["test_cases"]["with_failures"] == 0 and not summary["errors"], summary


def _operation_count(document: dict) -> int:
    methods = {"get", "put", "post", "delete", "patch"}
    return sum(method in methods for path in document["paths"].values() for method in path)


def _generated_cases(summary: dict) -> int:
    return int(summary["test_cases"]["generated"])


def _failures(output: str) -> str:
    """Schemathesis's report with request bodies cut short (a failing case can be megabytes)."""
    return "\n".join(line if len(line) < 1500 else line[:1500] + " …" for line in output.splitlines())


@pytest.fixture(scope="module")
def generated_client(document: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """A Python client generated from the served document by openapi-python-client, imported."""
    root = tmp_path_factory.mktemp("client")
    (root / "openapi.json").write_text(json.dumps(document))
    tools = str(Path(sys.executable).parent)  # the generator formats its output with ruff from here
    run = subprocess.run(
        [f"{tools}/openapi-python-client", "generate", "--path", "openapi.json", "--output-path", "sendense_client"]
        + ["--meta", "none"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{tools}:{os.environ.get('PATH', '')}"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr  # nothing left out of the client
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("sendense_client")
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "sendense_client" or m.startswith("sendense_client.")]:
            del sys.modules[name]


def test_generated_client_runs_a_job_from_creation_to_rolled_up_history(
    generated_client: ModuleType, api: str, stack: DevStack, scheduler_jobs, unique: str
) -> None:
    from sendense_client import AuthenticatedClient
    from sendense_client.api.backups import create_backup, get_backup
    from sendense_client.api.telemetry import get_telemetry_history, post_telemetry_update
    from sendense_client.models import (
        CreateBackup,
        CreateBackupBackupType,
        DiskSpec,
        Error,
        LiveHistory,
        PostTelemetryUpdateJobType,
        RolledUpHistory,
        TelemetryUpdate,
        TelemetryUpdateStatus,
        UpdateAccepted,
        UpdateFinished,
    )

    client = AuthenticatedClient(base_url=api, token=stack.agent_token)
    job = create_backup.sync(
        client=client,
        body=CreateBackup(
            vm_name=f"client-{unique}",
            backup_type=CreateBackupBackupType.FULL,
            repository_id="repo-client",
            disks=[DiskSpec(disk_index=0, size_bytes=4 * 2**30)],
        ),
    )
    assert job.status.value == "pending" and job.vm_name == f"client-{unique}"
    job_id = job.backup_id
    backup = PostTelemetryUpdateJobType.BACKUP
    total = 4 * 2**30
    for step in range(1, 6):
        answer = post_telemetry_update.sync(
            backup,
            job_id,
            client=client,
            body=TelemetryUpdate(
                bytes_transferred=total * step // 10,
                total_bytes=total,
                transfer_speed_bps=100_000_000 + step,
                progress_percent=10.0 * step,
                current_phase="transferring",
            ),
        )
        assert isinstance(answer, UpdateAccepted) and answer.accepted
    live = get_telemetry_history.sync(job_id, client=client)
    assert isinstance(live, LiveHistory) and len(live.chart_data) == 5
    assert live.current_state.progress_percent == 50.0
    done = post_telemetry_update.sync(
        backup,
        job_id,
        client=client,
        body=TelemetryUpdate(
            bytes_transferred=total,
            total_bytes=total,
            transfer_speed_bps=0,
            progress_percent=100.0,
            current_phase="completed",
            status=TelemetryUpdateStatus.COMPLETED,
        ),
    )
    assert isinstance(done, UpdateFinished) and done.status.value == "completed"
    refused = post_telemetry_update.sync(
        backup,
        job_id,
        client=client,
        body=TelemetryUpdate(bytes_transferred=1, total_bytes=1, transfer_speed_bps=1, progress_percent=1.0),
    )
    assert isinstance(refused, Error) and refused.status_code == 409

    assert scheduler_jobs.roll_up().rolled_up >= 1
    history = get_telemetry_history.sync(job_id, client=client)
    assert isinstance(history, RolledUpHistory)
    metrics = history.performance_metrics
    assert metrics.snapshots_recorded == 6 and metrics.bytes_transferred == total
    assert [p.p for p in metrics.chart_data][-1] == 100.0
    assert get_backup.sync(job_id, client=client).has_performance_metrics is True
