"""The telemetry fast path (api/fastpath.py) answers exactly as the framework's route does.

Two API processes on the same stores: the session's (fast path on, as shipped) and one started here with
`SENDENSE_API_FAST_PATH=0`. Every kind of single update (accepted, terminal, repeated end, refused by the
ingest, invalid, unauthorised, oversized, chunked, odd paths) is sent to both, each on a job of its own, and
the answers compared: status, headers that matter and body, byte for byte once the job ids are swapped.
The fast path's own counter proves the shipped process answered the common cases itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import OUTPUT_DIR
from tests.support.devstack import DevStack

RUNNING = {"bytes_transferred": 10, "total_bytes": 100, "transfer_speed_bps": 5, "progress_percent": 10.0}
_HEADERS = ("content-type", "retry-after", "www-authenticate")


@pytest.fixture(scope="module")
def framework_api(stack: DevStack) -> Iterator[str]:
    port = stack.api_port + 15
    proc = stack.start_api(port=port, env={"SENDENSE_API_FAST_PATH": "0"}, log_path=OUTPUT_DIR / "api-no-fast-path.log")
    yield f"http://127.0.0.1:{port}"
    stack.stop_process(proc)


def _fast_path_answers(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.search(r"^sendense_api_fast_path_answers_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _new_job(base: str, token: str, name: str) -> str:
    r = httpx.post(
        f"{base}/api/v1/backups",
        json={"vm_name": name, "repository_id": "repo-fast", "backup_type": "full"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return r.json()["backup_id"]


def _chunks(body: bytes) -> Iterator[bytes]:
    yield body[:7]
    yield body[7:]


def _cases(stack: DevStack) -> list[tuple[str, dict]]:
    """(name, request) pairs; a request's `path` has {job} where the job's id goes."""
    agent = {"Authorization": f"Bearer {stack.agent_token}"}
    viewer = {"Authorization": f"Bearer {stack.viewer_token}"}
    ahead = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    update = "/api/v1/telemetry/backup/{job}"
    end = {**RUNNING, "progress_percent": 100.0, "status": "completed"}
    chunked = b'{"bytes_transferred": 11, "total_bytes": 100, "transfer_speed_bps": 5, "progress_percent": 11.0}'
    return [
        ("running", {"path": update, "json": RUNNING, "headers": agent}),
        ("integral float", {"path": update, "json": {**RUNNING, "total_bytes": 100.0}, "headers": agent}),
        ("chunked body", {"path": update, "content": _chunks(chunked), "headers": agent}),
        ("wrong field type", {"path": update, "json": {**RUNNING, "bytes_transferred": "10"}, "headers": agent}),
        ("unknown field", {"path": update, "json": {**RUNNING, "speed": 1}, "headers": agent}),
        ("missing field", {"path": update, "json": {"bytes_transferred": 1}, "headers": agent}),
        ("not JSON", {"path": update, "content": b"{not json", "headers": agent}),
        ("empty body", {"path": update, "content": b"", "headers": agent}),
        ("timestamp ahead", {"path": update, "json": {**RUNNING, "timestamp": ahead}, "headers": agent}),
        ("oversized", {"path": update, "content": b'{"x": "' + b"a" * 70_000 + b'"}', "headers": agent}),
        ("no token", {"path": update, "json": RUNNING, "headers": {}}),
        ("wrong token", {"path": update, "json": RUNNING, "headers": {"Authorization": "Bearer nope"}}),
        ("viewer token", {"path": update, "json": RUNNING, "headers": viewer}),
        ("wrong job type", {"path": "/api/v1/telemetry/restore/{job}", "json": RUNNING, "headers": agent}),
        ("unknown job type", {"path": "/api/v1/telemetry/archive/{job}", "json": RUNNING, "headers": agent}),
        ("unknown job", {"path": "/api/v1/telemetry/backup/{job}-missing", "json": RUNNING, "headers": agent}),
        ("bad job id", {"path": "/api/v1/telemetry/backup/-{job}", "json": RUNNING, "headers": agent}),
        ("trailing slash", {"path": update + "/", "json": RUNNING, "headers": agent}),
        ("disk update", {"path": update, "json": {**RUNNING, "disk_index": 0}, "headers": agent}),
        ("terminal", {"path": update, "json": end, "headers": agent}),
        ("the same end again", {"path": update, "json": end, "headers": agent}),
        ("after the end", {"path": update, "json": RUNNING, "headers": agent}),
        ("another end after the end", {"path": update, "json": {**RUNNING, "status": "failed"}, "headers": agent}),
    ]  # fmt: skip


def _answer(base: str, job: str, request: dict) -> tuple[int, dict, str]:
    request = dict(request)
    path = request.pop("path").format(job=job)
    r = httpx.post(f"{base}{path}", timeout=10, **request)
    headers = {name: r.headers.get(name) for name in _HEADERS}
    return r.status_code, headers, r.text.replace(job, "<job>")


def test_every_kind_of_update_is_answered_as_the_route_answers_it(
    api: str, framework_api: str, stack: DevStack, unique: str
) -> None:
    fast_before = _fast_path_answers(api)
    framework_before = _fast_path_answers(framework_api)
    jobs = {base: _new_job(base, stack.agent_token, f"fast-{unique}") for base in (api, framework_api)}
    differences = []
    for name, request in _cases(stack):
        fast = _answer(api, jobs[api], request)
        framework = _answer(framework_api, jobs[framework_api], request)
        if name == "chunked body":
            # Litestar's route refuses a chunked body with a puzzling 400 ("data: 'data'"); the fast path
            # takes it like any other (checked below).
            assert framework[0] == 400
            continue
        if fast != framework:
            differences.append(f"{name}:\n  fast path: {fast}\n  framework: {framework}")
    assert not differences, "\n".join(differences)
    # Accepted, chunked, terminal, the same end, after the end (409), timestamp ahead (400 from the
    # ingest), unknown job (404), wrong job type (409), disk update: answered by the fast path itself.
    assert _fast_path_answers(api) - fast_before >= 9
    assert _fast_path_answers(framework_api) == framework_before


def test_statuses_are_what_the_job_sheet_says(api: str, stack: DevStack, unique: str) -> None:
    """The comparison above would pass if both were wrong alike: the main answers, checked outright."""
    job = _new_job(api, stack.agent_token, f"fast-{unique}")
    statuses = {name: _answer(api, job, request)[0] for name, request in _cases(stack)}
    assert statuses["running"] == 202
    assert statuses["chunked body"] == 202
    assert statuses["wrong field type"] == 400
    assert statuses["timestamp ahead"] == 400
    assert statuses["oversized"] == 413
    assert statuses["no token"] == 401
    assert statuses["viewer token"] == 403
    assert statuses["unknown job"] == 404
    assert statuses["wrong job type"] == 409
    assert statuses["terminal"] == 200
    assert statuses["the same end again"] == 200
    assert statuses["after the end"] == 409


def test_without_tokens_the_fast_path_still_answers(stack: DevStack, unique: str) -> None:
    """With no tokens configured (loopback only) nothing is checked, by the middleware or by the fast path."""
    port = stack.api_port + 16
    no_tokens = {"SENDENSE_AGENT_TOKENS": "", "SENDENSE_VIEWER_TOKENS": "", "SENDENSE_OPERATOR_TOKENS": ""}
    proc = stack.start_api(port=port, env=no_tokens, log_path=OUTPUT_DIR / "api-no-tokens.log")
    try:
        base = f"http://127.0.0.1:{port}"
        job = _new_job(base, "anything", f"fast-open-{unique}")
        before = _fast_path_answers(base)
        assert httpx.post(f"{base}/api/v1/telemetry/backup/{job}", json=RUNNING, timeout=10).status_code == 202
        assert _fast_path_answers(base) == before + 1
    finally:
        stack.stop_process(proc)
