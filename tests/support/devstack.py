"""DevStack: starts the project's own InfluxDB, MariaDB and API processes for tests and benchmarks (test support,
not part of the product: the product's processes are started by infra/*.sh and `sendense demo`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cli import wait_until_live

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "DevStack", "PROJECT_DIR", "wait_until_live"]

PROJECT_DIR = Path(__file__).resolve().parents[2]

# Debian's Chromium, headless, for the browser tests and the dashboard benchmark. Without the
# background-networking flags it keeps trying hosts this machine cannot reach.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@dataclass
class DevStack:
    """One set of servers on its own loopback ports and state directory (`infra/*.sh` do the work)."""

    state_dir: Path
    influx_port: int = 18086
    mysql_port: int = 13306
    api_port: int = 18082
    agent_token: str = "test-agent-token"
    viewer_token: str = "test-viewer-token"
    operator_token: str = "test-operator-token"
    extra_env: dict[str, str] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def influx_url(self) -> str:
        return f"http://127.0.0.1:{self.influx_port}"

    def env(self) -> dict[str, str]:
        """The SENDENSE_* variables that point every component at this stack."""
        return {
            "SENDENSE_STATE_DIR": str(self.state_dir),
            "SENDENSE_INFLUX_PORT": str(self.influx_port),
            "SENDENSE_MYSQL_PORT": str(self.mysql_port),
            "SENDENSE_INFLUX_URL": self.influx_url,
            "SENDENSE_MYSQL_URL": (
                f"mysql+pymysql://oma_user:oma_password@127.0.0.1:{self.mysql_port}/migratekit_oma?charset=utf8mb4"
            ),
            "SENDENSE_API_PORT": str(self.api_port),
            "SENDENSE_AGENT_TOKENS": self.agent_token,
            "SENDENSE_VIEWER_TOKENS": self.viewer_token,
            "SENDENSE_OPERATOR_TOKENS": self.operator_token,
            **self.extra_env,
        }

    def apply_env(self) -> None:
        os.environ.update(self.env())

    def _infra(self, script: str, action: str) -> None:
        env = {**os.environ, **self.env()}
        subprocess.run(["bash", str(PROJECT_DIR / "infra" / script), action], env=env, check=True)

    def server_running(self, script: str) -> bool:
        env = {**os.environ, **self.env()}
        result = subprocess.run(["bash", str(PROJECT_DIR / "infra" / script), "status"], env=env, capture_output=True)
        return result.returncode == 0

    def start_servers(self) -> None:
        """Start InfluxDB and MariaDB unless they already run; remember which ones this call started."""
        for script in ("influxdb.sh", "mariadb.sh"):
            if not self.server_running(script):
                self.started.append(script)
            self._infra(script, "start")

    def stop_servers(self) -> None:
        for script in reversed(self.started):
            self._infra(script, "stop")
        self.started.clear()

    def stop_influx(self) -> None:
        self._infra("influxdb.sh", "stop")

    def start_influx(self) -> None:
        self._infra("influxdb.sh", "start")

    def stop_mysql(self) -> None:
        self._infra("mariadb.sh", "stop")

    def start_mysql(self) -> None:
        self._infra("mariadb.sh", "start")

    def start_nginx(self, port: int, upstream_ports: list[int]) -> None:
        """nginx on `port` in front of API processes on `upstream_ports` (infra/nginx.sh)."""
        env = {
            **os.environ,
            **self.env(),
            "SENDENSE_NGINX_PORT": str(port),
            "SENDENSE_API_UPSTREAMS": ",".join(f"127.0.0.1:{p}" for p in upstream_ports),
        }
        subprocess.run(["bash", str(PROJECT_DIR / "infra" / "nginx.sh"), "start"], env=env, check=True)

    def stop_nginx(self) -> None:
        self._infra("nginx.sh", "stop")

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "--log-level", "WARNING", "migrate"],
            env={**os.environ, **self.env()},
            check=True,
            cwd=PROJECT_DIR,
        )

    def start_process(
        self, *args: str, log_path: Path | None = None, env: dict[str, str] | None = None, own_group: bool = True
    ):
        """Run `sendense <args>` against this stack; output goes to `log_path`. In a process group of its
        own by default, so that stop_process() stops its workers with it."""
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - child keeps it
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *args],
            env={**os.environ, **self.env(), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_DIR,
            start_new_session=own_group,
        )

    def start_api(
        self,
        *,
        server: str = "granian",
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        own_group: bool = True,
    ):
        """An API process (on `port`, default this stack's). `own_group`: in a process group of its own,
        so that a test can kill it and its workers at once (os.killpg)."""
        port = port or self.api_port
        proc = self.start_process(
            "api", "--server", server, "--port", str(port), log_path=log_path, env=env, own_group=own_group
        )
        self.wait_for_api(proc, port=port)
        return proc

    def wait_for_api(self, proc: subprocess.Popen, timeout: float = 30.0, port: int | None = None) -> None:
        wait_until_live(f"http://127.0.0.1:{port or self.api_port}/api/v1/health/live", timeout, proc)

    @staticmethod
    def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> int:
        """SIGTERM (a graceful shutdown), then SIGKILL after `timeout`; to the whole process group when
        the process leads one, so that no worker it forked (granian's) is left listening on its port."""
        group = _own_group(proc)
        if proc.poll() is None:
            _signal(proc, signal.SIGTERM, group)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL, group)
                proc.wait()
        if group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # anything of the group still there
        return proc.returncode


def _own_group(proc: subprocess.Popen) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


def _signal(proc: subprocess.Popen, sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
