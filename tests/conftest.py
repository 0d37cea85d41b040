"""Session fixtures: the project's own InfluxDB and MariaDB (test ports), migrations, and the API process."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.devstack import PROJECT_DIR, DevStack

OUTPUT_DIR = Path(os.environ.get("SENDENSE_TEST_OUTPUT", PROJECT_DIR / "test-output"))

STACK = DevStack(
    state_dir=Path(os.environ.get("SENDENSE_TEST_STATE_DIR", PROJECT_DIR / ".state-test")),
    influx_port=int(os.environ.get("SENDENSE_TEST_INFLUX_PORT", "18086")),
    mysql_port=int(os.environ.get("SENDENSE_TEST_MYSQL_PORT", "13306")),
    api_port=int(os.environ.get("SENDENSE_TEST_API_PORT", "18082")),
    extra_env={
        # Short waits so that the tests see outages and rollups quickly.
        "SENDENSE_COMMIT_TIMEOUT": "2",
        "SENDENSE_RETRY_AFTER": "1",
        "SENDENSE_ROLLUP_INTERVAL": "1",
        "SENDENSE_PURGE_INTERVAL": "2",
    },
)


@pytest.fixture(scope="session")
def stack() -> Iterator[DevStack]:
    """Real servers for the whole session; stopped at the end only if this session started them."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    STACK.apply_env()
    STACK.start_servers()
    STACK.migrate()
    yield STACK
    STACK.stop_servers()


@pytest.fixture(scope="session")
def api(stack: DevStack) -> Iterator[str]:
    """The API as its own process (granian, as shipped); its log goes to the test output directory."""
    proc = stack.start_api(log_path=OUTPUT_DIR / "api.log")
    yield stack.api_url
    stack.stop_process(proc)


@pytest.fixture(scope="session")
def settings(stack: DevStack):
    from pipeline.settings import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def engine(settings):
    from pipeline.db.engine import create_db_engine

    engine = create_db_engine(settings.mysql, pool_size=4)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def influx(settings):
    from pipeline.tsdb.influx import SyncInflux

    client = SyncInflux(settings.influx)
    yield client
    client.close()


def _client(api: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{api}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture
def agent(api: str, stack: DevStack) -> Iterator[httpx.Client]:
    with _client(api, stack.agent_token) as client:
        yield client


@pytest.fixture
def viewer(api: str, stack: DevStack) -> Iterator[httpx.Client]:
    with _client(api, stack.viewer_token) as client:
        yield client


@pytest.fixture
def operator(api: str, stack: DevStack) -> Iterator[httpx.Client]:
    with _client(api, stack.operator_token) as client:
        yield client


@pytest.fixture
def scheduler_jobs(settings):
    """The scheduler's three jobs, run by hand so a test decides when the rollup happens.

    One run rolls up every finished job, not a batch, so a test's job is never left behind others.
    """
    import dataclasses

    from pipeline.scheduler import SchedulerJobs

    unbounded = dataclasses.replace(settings.scheduler, rollup_batch=1_000_000)
    jobs = SchedulerJobs(dataclasses.replace(settings, scheduler=unbounded))
    yield jobs
    jobs.close()


@pytest.fixture
def unique() -> str:
    """A short unique token for names, so tests never depend on each other's data."""
    return uuid.uuid4().hex[:10]
