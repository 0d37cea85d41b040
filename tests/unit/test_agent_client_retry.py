"""Unit tests of TelemetryClient's retries and errors, against an httpx.MockTransport stand-in for the API."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from pipeline.agent.client import ApiError, TelemetryClient, parse_retry_after

BASE = "http://127.0.0.1:8082"
UPDATE = {
    "bytes_transferred": 1,
    "total_bytes": 10,
    "transfer_speed_bps": 1,
    "progress_percent": 10.0,
    "current_phase": "transferring",
}


class Script:
    """Answers requests from a list of responses/exceptions in order, recording what was sent."""

    def __init__(self, *steps: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step(request) if callable(step) else step


def _client(script: Script, sleeps: list[float], **kw) -> TelemetryClient:
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return TelemetryClient(BASE, kw.pop("token", None), transport=httpx.MockTransport(script), sleep=fake_sleep, **kw)


def _refused() -> httpx.ConnectError:
    return httpx.ConnectError("[Errno 111] Connection refused")


def _problem(status: int, detail: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"status_code": status, "detail": detail}, headers=headers)


@pytest.mark.parametrize(
    "failure",
    [_refused(), httpx.ReadTimeout("slow"), _problem(502, "bad gateway"), _problem(503, "overloaded")],
    ids=["refused", "timeout", "502", "503"],
)
async def test_retries_transient_failures_then_succeeds(failure: httpx.Response | Exception) -> None:
    script = Script(failure, failure, httpx.Response(202, json={}))
    sleeps: list[float] = []
    async with _client(script, sleeps) as client:
        response = await client.send_update("backup", "job-1", UPDATE)
    assert response.status_code == 202
    assert len(script.requests) == 3
    assert len(sleeps) == 2
    assert 0 < sleeps[0] <= 0.2 and 0 < sleeps[1] <= 0.4  # exponential backoff with jitter


async def test_429_and_503_honour_retry_after_capped() -> None:
    script = Script(
        _problem(429, "slow down", **{"Retry-After": "2"}),
        _problem(503, "overloaded", **{"Retry-After": "120"}),
        httpx.Response(202, json={}),
    )
    sleeps: list[float] = []
    async with _client(script, sleeps, max_backoff=5.0) as client:
        await client.send_update("backup", "job-1", UPDATE)
    assert sleeps == [2.0, 5.0]


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
async def test_client_errors_are_not_retried(status: int) -> None:
    script = Script(_problem(status, f"nope {status}"))
    sleeps: list[float] = []
    async with _client(script, sleeps) as client:
        with pytest.raises(ApiError) as caught:
            await client.send_update("backup", "job-1", UPDATE)
    assert len(script.requests) == 1 and sleeps == []
    assert caught.value.status == status
    assert caught.value.detail.startswith(f"nope {status}")
    assert caught.value.attempts == 1


async def test_gives_up_after_max_attempts_with_status_and_detail() -> None:
    script = Script(_problem(503, "ingest buffer full"))
    sleeps: list[float] = []
    async with _client(script, sleeps, max_attempts=4, backoff=1.0, max_backoff=3.0) as client:
        with pytest.raises(ApiError) as caught:
            await client.send_update("backup", "job-1", UPDATE)
    assert len(script.requests) == 4
    assert len(sleeps) == 3 and max(sleeps) <= 3.0
    assert caught.value.status == 503
    assert caught.value.attempts == 4
    assert "gave up after 4 attempts" in caught.value.detail
    assert "ingest buffer full" in str(caught.value)


async def test_refused_connection_says_what_to_do() -> None:
    script = Script(_refused())
    async with _client(script, [], max_attempts=2) as client:
        with pytest.raises(ApiError) as caught:
            await client.list_backups(status="pending")
    assert caught.value.status is None
    assert f"API at {BASE} refused the connection; is `sendense api` running?" in str(caught.value)


async def test_litestar_validation_detail_includes_extra() -> None:
    body = {
        "status_code": 400,
        "detail": "Validation failed for POST /api/v1/backups",
        "extra": [{"message": "Expected `int`, got `str`", "key": "disks[0].size_bytes", "source": "body"}],
    }
    script = Script(httpx.Response(400, json=body))
    async with _client(script, []) as client:
        with pytest.raises(ApiError) as caught:
            await client.create_backup("vm", "full", "repo")
    assert caught.value.detail == (
        "Validation failed for POST /api/v1/backups (disks[0].size_bytes: Expected `int`, got `str`)"
    )


async def test_non_json_error_body_is_kept_as_text() -> None:
    script = Script(httpx.Response(404, text="Not Found"))
    async with _client(script, []) as client:
        with pytest.raises(ApiError) as caught:
            await client.get_backup("x")
    assert caught.value.detail == "Not Found"


async def test_create_without_id_is_not_resent_after_an_ambiguous_failure() -> None:
    # The server may have created the job before the answer was lost: a resend could make a twin.
    script = Script(httpx.ReadTimeout("slow"), httpx.Response(201, json={"backup_id": "b"}))
    async with _client(script, []) as client:
        with pytest.raises(ApiError):
            await client.create_backup("vm", "full", "repo")
    assert len(script.requests) == 1


async def test_create_with_id_treats_conflict_on_retry_as_its_own_job() -> None:
    job = {"backup_id": "sim-1", "vm_name": "SQL Server (prod)", "status": "pending"}
    script = Script(
        httpx.ReadTimeout("slow"),
        _problem(409, "backup_id already exists"),
        httpx.Response(200, json=job),
    )
    async with _client(script, []) as client:
        created = await client.create_backup("SQL Server (prod)", "full", "repo", backup_id="sim-1")
    assert created == job
    assert [r.method for r in script.requests] == ["POST", "POST", "GET"]
    assert script.requests[2].url.path == "/api/v1/backups/sim-1"


async def test_requests_carry_token_json_and_escaped_ids() -> None:
    script = Script(lambda request: httpx.Response(201, json=json.loads(request.content)))
    async with _client(script, [], token="s3cret") as client:
        created = await client.create_backup(
            "файл-сервер 01",
            "incremental",
            "repo-1",
            backup_id="a.b",
            disks=[{"disk_index": 0, "size_bytes": 5}],
            machine={"cpu_count": 4},
        )
        await client.send_update("backup", "a/b?c", UPDATE)  # invalid id, but it must not change the route
    first, second = script.requests
    assert first.headers["Authorization"] == "Bearer s3cret"
    assert created["vm_name"] == "файл-сервер 01" and created["job_type"] == "backup"
    assert created["disks"] == [{"disk_index": 0, "size_bytes": 5}] and created["machine"] == {"cpu_count": 4}
    assert second.url.raw_path == b"/api/v1/telemetry/backup/a%2Fb%3Fc"


async def test_no_token_no_authorization_header() -> None:
    script = Script(httpx.Response(200, json={"backups": [{"backup_id": "a"}], "total": 1}))
    async with _client(script, []) as client:
        assert await client.list_backups(status="pending", limit=100, vm_name=None) == [{"backup_id": "a"}]
    request = script.requests[0]
    assert "Authorization" not in request.headers
    assert dict(request.url.params) == {"status": "pending", "limit": "100"}


async def test_send_batch_returns_body() -> None:
    answer = {"accepted": 1, "rejected": [{"index": 1, "status": 404, "detail": "unknown job"}]}
    script = Script(httpx.Response(202, json=answer))
    async with _client(script, []) as client:
        assert await client.send_batch([{"job_type": "backup", "job_id": "a", **UPDATE}]) == answer
    assert json.loads(script.requests[0].content) == {"updates": [{"job_type": "backup", "job_id": "a", **UPDATE}]}


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after(None) is None
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-1") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0


async def test_validation_detail_already_naming_the_field_is_not_repeated() -> None:
    # The API folds `extra` into `detail` itself; the client must not say it twice.
    extra = [{"message": "Expected `int`, got `str`", "key": "total_bytes", "source": "body"}]
    body = {"status_code": 400, "detail": "total_bytes: Expected `int`, got `str`", "extra": extra}
    script = Script(httpx.Response(400, json=body))
    async with _client(script, []) as client:
        with pytest.raises(ApiError) as caught:
            await client.send_update("backup", "job-1", UPDATE)
    assert caught.value.detail == "total_bytes: Expected `int`, got `str`"


async def test_history_path() -> None:
    script = Script(httpx.Response(200, json={"job_id": "j-1", "data_source": "none"}))
    async with _client(script, []) as client:
        assert (await client.history("j-1"))["data_source"] == "none"
    assert script.requests[0].url.path == "/api/v1/telemetry/history/j-1"
