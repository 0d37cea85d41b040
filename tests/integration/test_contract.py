"""The OpenAPI document against the running API: it validates, schemathesis finds no disagreement in
more than 1,000 generated requests, and a client generated from it does a job's whole life."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from openapi_spec_validator import validate
from sqlalchemy import text

from api.auth import required_role
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
        ("put", "/api/v1/machines/{vm_name}"): {"200", "201", "400", "401", "403", "413", "503"},
        ("get", "/api/v1/telemetry/history/{job_id}"): {"200", "400", "401", "404", "503"},
        ("get", "/api/v1/health/ready"): {"200", "503"},
        ("get", "/api/v1/alerts"): {"200", "400", "401", "503"},
        ("get", "/api/v1/alerts/{alert_id}"): {"200", "400", "401", "404", "503"},
        ("post", "/api/v1/alerts/{alert_id}/acknowledge"): {"200", "400", "401", "403", "404", "413", "503"},
        ("get", "/api/v1/silences"): {"200", "400", "401", "503"},
        ("post", "/api/v1/silences"): {"201", "400", "401", "403", "413", "503"},
        ("delete", "/api/v1/silences/{silence_id}"): {"200", "400", "401", "403", "404", "503"},
        ("get", "/api/v1/alert-rules"): {"200", "401", "503"},
        ("put", "/api/v1/alert-rules"): {"200", "400", "401", "403", "413", "503"},
        **{
            ("get", f"/api/v1/reports/{name}"): {"200", "400", "401", "503"}
            for name in (
                "estate",
                "estate.csv",
                "estate.pdf",
                "estate.html",
                "grid",
                "grid.csv",
                "timeline",
                "timeline.csv",
            )
        },
        ("get", "/api/v1/machines/{vm_name}/report.pdf"): {"200", "400", "401", "404", "503"},
        ("get", "/api/v1/machines/{vm_name}/report.html"): {"200", "400", "401", "404", "503"},  # fmt: skip
    }
    for (method, path), statuses in expected.items():
        operation = document["paths"][path][method]
        assert set(operation["responses"]) == statuses, (method, path)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if path.endswith(".csv") and status == "200":  # the exports: CSV, streamed
                    assert set(response["content"]) == {"text/csv"}, (method, path)
                    continue
                if path.endswith((".pdf", ".html")) and status == "200":  # the report documents
                    kind = "application/pdf" if path.endswith(".pdf") else "text/html"
                    assert set(response["content"]) == {kind}, (method, path)
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert schema != {"type": "object"}, (method, path, status)
                if status.startswith(("4", "5")) and path != "/api/v1/health/ready":
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
            if method in ("post", "put"):
                body = operation["requestBody"]["content"]["application/json"]
                # A Struct's component, or (PUT /alert-rules) a union of them tagged on a field.
                refs = [o["$ref"] for o in body["schema"].get("allOf") or body["schema"]["anyOf"]]
                assert all(r.startswith("#/components/schemas/") for r in refs), (method, path)
                assert body["schema"]["examples"], (method, path)
    history = document["paths"]["/api/v1/telemetry/history/{job_id}"]["get"]["responses"]["200"]
    assert history["content"]["application/json"]["schema"]["discriminator"]["propertyName"] == "data_source"
    overrides = document["paths"]["/api/v1/alert-rules"]["put"]["requestBody"]["content"]["application/json"]
    assert overrides["schema"]["discriminator"]["propertyName"] == "rule"
    assert len(overrides["schema"]["discriminator"]["mapping"]) == 9, "one body per rule, with its own params"
    scheme = document["components"]["securitySchemes"]["BearerToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert all(role in scheme["description"] for role in ("viewer", "agent", "operator"))
    assert document["security"] == [{"BearerToken": []}]


def test_the_webhook_body_is_documented_as_a_webhook_of_the_document(document: dict) -> None:
    """OpenAPI 3.1 `webhooks`: the POST the pipeline sends a receiver, its body the payload the outbox holds."""
    from msgspec import convert, structs

    from api.alert_schemas import WebhookNotification
    from pipeline.alerts.lifecycle import Notice
    from pipeline.alerts.store import notification_payload

    hook = document["webhooks"]["alertNotification"]["post"]
    body = hook["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/WebhookNotification"}
    component = document["components"]["schemas"]["WebhookNotification"]
    assert component["additionalProperties"] is False
    assert {p["name"] for p in hook["parameters"]} == {
        "X-Sendense-Signature", "X-Sendense-Idempotency-Key", "X-Sendense-Attempt"
    }, "the headers the webhook channel sends (pipeline/alerts/delivery/webhook.py)"  # fmt: skip
    # What the store builds is exactly what the document says (no field more, none missing).
    alert = {"id": 7, "rule": "job_failed", "vm_name": "vm a&b", "job_id": "j-1", "job_type": "backup",
             "summary": "failed", "started_at": datetime(2026, 12, 3, 8), "resolved_at": None}  # fmt: skip
    payload = notification_payload(
        alert, Notice("firing", "critical", 1), "http://dash:5006/", datetime(2026, 12, 3, 9)
    )
    decoded = convert(payload, WebhookNotification, strict=False)
    assert set(payload) == set(component["properties"]) == {f.name for f in structs.fields(decoded)}
    assert decoded.idempotency_key == "sendense-alert-7-1"
    assert decoded.dashboard_url == "http://dash:5006/?vm=vm+a%26b", "the machine's name is URL-encoded"


def test_every_body_over_its_limit_is_refused_as_documented(document: dict, api: str, stack: DevStack) -> None:
    """A body over any limit (9 MiB: more than the batch's 8) is answered 413 with the Error body, by
    every operation that takes a body, and each of them documents that 413."""
    body = b'{"x": "' + b"a" * (9 * 1024 * 1024) + b'"}'
    checked = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "requestBody" not in operation:
                continue
            assert "413" in operation["responses"], (method, path)
            url = api + path.replace("{job_type}", "backup").replace("{job_id}", "x").replace("{vm_name}", "x")
            url = url.replace("{alert_id}", "1")
            token = stack.agent_token if required_role(method.upper(), url[len(api) :]) == "agent" else None
            headers = {"Authorization": f"Bearer {token or stack.operator_token}", "Content-Type": "application/json"}
            answer = httpx.request(method, url, content=body, headers=headers, timeout=30)
            assert answer.status_code == 413, (method, path, answer.status_code, answer.text[:200])
            assert answer.json()["status_code"] == 413
            checked.append(operation["operationId"])
    assert len(checked) == 8, checked


def test_bounds_in_the_document_are_the_validators(document: dict) -> None:
    update = document["components"]["schemas"]["TelemetryUpdate"]
    assert update["additionalProperties"] is False
    assert update["properties"]["disk_index"]["anyOf"][0] == {"type": "integer", "minimum": 0, "maximum": 255}
    assert update["properties"]["bytes_transferred"]["maximum"] == 2**53 - 1
    assert "\\Z" not in json.dumps(document), "patterns must be ECMA-262, the dialect of JSON Schema"


@pytest.fixture
def undo_operator_writes(api: str, stack: DevStack, engine) -> Iterator[None]:
    """What schemathesis did as an operator undone afterwards: the silences it made are ended, the rule
    overrides it set removed, the machines it registered (without jobs) deleted. Left in place, a silence
    or an override of every machine would change what later tests' evaluations notify."""
    with engine.connect() as conn:
        since = conn.execute(text("SELECT UTC_TIMESTAMP(6)")).scalar_one()
    yield
    headers = {"Authorization": f"Bearer {stack.operator_token}"}
    with httpx.Client(base_url=f"{api}/api/v1", headers=headers, timeout=30) as client:
        # Newest first; ending one that has ended or expired changes nothing.
        for silence in client.get("/silences", params={"limit": 1000}).json()["silences"]:
            if datetime.fromisoformat(silence["created_at"]).replace(tzinfo=None) >= since:
                client.delete(f"/silences/{silence['id']}", params={"by": "contract-test"}).raise_for_status()
        for rule in client.get("/alert-rules").json()["rules"]:
            for override in rule["overrides"]:
                if datetime.fromisoformat(override["updated_at"]).replace(tzinfo=None) >= since:
                    body = {"rule": rule["rule"], "vm_name": override["vm_name"], "updated_by": "contract-test"}
                    client.put("/alert-rules", json=body).raise_for_status()
    with engine.begin() as conn:  # no endpoint deletes a machine: the test removes its own
        conn.execute(text("DELETE FROM machines WHERE total_jobs = 0 AND created_at >= :since"), {"since": since})


@pytest.mark.usefixtures("undo_operator_writes")
def test_schemathesis_finds_no_disagreement(api: str, stack: DevStack, document: dict, tmp_path: Path) -> None:
    """Over 1,000 generated requests (valid and invalid) across every operation: no 5xx, every status,
    header and body as documented, invalid input refused, valid input taken. Requests carry the agent
    token, but the operator-only writes carry the operator token (schemathesis.toml)."""
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
    env = {**os.environ, "SENDENSE_TEST_OPERATOR_AUTHORIZATION": f"Bearer {stack.operator_token}"}
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
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
    # The generator reads bytes only from application/octet-stream: the report PDFs are that to it.
    (root / "generator.json").write_text(
        json.dumps({"content_type_overrides": {"application/pdf": "application/octet-stream"}})
    )
    tools = str(Path(sys.executable).parent)  # the generator formats its output with ruff from here
    run = subprocess.run(
        [f"{tools}/openapi-python-client", "generate", "--path", "openapi.json", "--output-path", "sendense_client"]
        + ["--meta", "none", "--config", "generator.json"],
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


def test_generated_client_sets_a_rule_override_and_reads_alerts_and_silences(
    generated_client: ModuleType, api: str, stack: DevStack, unique: str
) -> None:
    """The alerts' operations through the generated client: a rule override (the union body tagged on
    `rule`), a silence, and the reads, each with the role it needs."""
    from sendense_client import AuthenticatedClient
    from sendense_client.api.alerts import create_silence, list_alert_rules, list_alerts, set_alert_rule
    from sendense_client.models import (
        AlertList,
        AlertRuleConfig,
        Error,
        JobStalledOverride,
        JobStalledOverrideRule,
        MinutesParams,
        Silence,
        SilenceBody,
    )

    operator = AuthenticatedClient(base_url=api, token=stack.operator_token)
    viewer = AuthenticatedClient(base_url=api, token=stack.viewer_token)
    vm = f"client-{unique}"
    body = JobStalledOverride(
        rule=JobStalledOverrideRule.JOB_STALLED, updated_by="client", vm_name=vm, params=MinutesParams(minutes=25)
    )
    refused = set_alert_rule.sync(client=viewer, body=body)
    assert isinstance(refused, Error) and refused.status_code == 403
    rule = set_alert_rule.sync(client=operator, body=body)
    assert isinstance(rule, AlertRuleConfig)
    [override] = [o for o in rule.overrides if o.vm_name == vm]
    assert override.params.to_dict() == {"minutes": 25.0}
    listed = list_alert_rules.sync(client=viewer)
    assert vm in [o.vm_name for r in listed.rules for o in r.overrides]
    silence = create_silence.sync(
        client=operator, body=SilenceBody(reason="client", created_by="client", vm_name=vm, duration_seconds=600)
    )
    assert isinstance(silence, Silence) and silence.active is True
    page = list_alerts.sync(client=viewer, vm_name=vm)
    assert isinstance(page, AlertList) and page.total == 0 and page.firing.critical >= 0
    set_alert_rule.sync(client=operator, body=JobStalledOverride(rule=body.rule, updated_by="client", vm_name=vm))
