"""Single updates over HTTP with durable acknowledgement: 1 process, 2 processes, 2 behind nginx, each
beside the bare Litestar app with the same process count, at 64 and 512 connections; and the previous
commit (in-memory acknowledgement) side by side.

What it measures
    `wrk --latency` POSTing one running update per request, round-robin over 1,000 jobs created and
    primed beforehand, for `--duration` s per cell after `--warmup` s of uncounted load:
      * 1 process: `sendense api` (granian, 1 worker) against `bench/bare_app.py` (1 worker);
      * 2 processes: `sendense api --workers 2` against `bare_app.py --workers 2` (one port, SO_REUSEPORT);
      * 2 behind nginx: two `sendense api` on two ports behind `infra/nginx.sh` against two bare apps
        behind the same nginx configuration;
      * previous commit (`--baseline-ref`, default: the commit before durable acknowledgement), 1 process,
        run from a git worktree against a database of its own (its schema is older).
    For every run of ours it checks that InfluxDB holds at least as many new points as wrk counted
    2xx answers (a 2xx is durable): "lost" must be 0.

Usage
    .venv/bin/python bench/ingest_matrix.py [--duration 20] [--connections 64,512] [--baseline-ref REV]
        [--configs 1,2,nginx] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import _common as c
import httpx
from ingest_http import write_lua

BASELINE_REF = "0f9f651"  # the last commit that acknowledged from memory
NGINX_PORT = c.API_PORT + 40
BASELINE_DB = "migratekit_prev"


def _wait(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.post(url, json=c.UPDATE_BODY, headers=c.AGENT_HEADERS, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer at {url}")


@contextlib.contextmanager
def processes(cmds: list[tuple[list[str], dict[str, str], Path, str]]) -> Iterator[list[subprocess.Popen]]:
    procs = []
    try:
        for cmd, env, cwd, name in cmds:
            out = open(c.logs_dir() / f"matrix-{name}.log", "ab")  # noqa: SIM115 - the child keeps it
            procs.append(
                subprocess.Popen(cmd, env={**os.environ, **env}, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
            )
        yield procs
    finally:
        for proc in procs:
            c.DevStack.stop_process(proc, timeout=20)


def ours_cmd(port: int, workers: int, cwd: Path = c.PROJECT_DIR, env: dict | None = None, name: str = "ours"):
    cmd = [sys.executable, "-m", "pipeline.cli", "--log-level", "WARNING", "api", "--port", str(port)]
    cmd += ["--workers", str(workers)] if workers > 1 else []
    return cmd, env or {}, cwd, f"{name}-{port}"


def bare_cmd(port: int, workers: int):
    return (
        [sys.executable, str(c.BENCH_DIR / "bare_app.py"), "--port", str(port), "--workers", str(workers)],
        {},
        c.PROJECT_DIR,
        f"bare-{port}",
    )


@contextlib.contextmanager
def nginx(stack: c.DevStack, ports: list[int]) -> Iterator[str]:
    stack.start_nginx(NGINX_PORT, ports)
    try:
        yield f"http://127.0.0.1:{NGINX_PORT}"
    finally:
        stack.stop_nginx()


def measure(url: str, lua: Path, args, connections: int, prefix: str | None, influx_db: str | None = None) -> dict:
    # Warm-up, not counted: a fresh process first loads each job into its cache (one query per job).
    c.run_wrk(f"{url}/api/v1/telemetry/backup/x", script=lua, duration=args.warmup, connections=connections, threads=2)
    before = c.influx_count(prefix, db=influx_db) if prefix else 0
    result, _ = c.run_wrk(
        f"{url}/api/v1/telemetry/backup/x", script=lua, duration=args.duration, connections=connections, threads=2
    )
    if prefix:
        time.sleep(0.5)  # answers in flight when wrk stopped
        result["points"] = c.influx_count(prefix, db=influx_db) - before
        result["lost"] = max(0, result["ok"] - result["points"])
    return result


def baseline_worktree(ref: str) -> Path:
    path = c.STATE_DIR / f"worktree-{ref}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=c.PROJECT_DIR, check=True)
    return path


def baseline_env(stack: c.DevStack) -> dict[str, str]:
    return {
        "SENDENSE_MYSQL_URL": (
            f"mysql+pymysql://oma_user:oma_password@127.0.0.1:{stack.mysql_port}/{BASELINE_DB}?charset=utf8mb4"
        ),
        "SENDENSE_INFLUX_DB": "sendense_prev",
    }


def prepare_baseline(stack: c.DevStack, tree: Path) -> dict[str, str]:
    """A database of its own for the previous commit (its schema is older), migrated by its own code."""
    socket = stack.state_dir / "mariadb" / "mariadbd.sock"
    sql = (
        f"CREATE DATABASE IF NOT EXISTS {BASELINE_DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; "
        f"GRANT ALL PRIVILEGES ON {BASELINE_DB}.* TO 'oma_user'@'127.0.0.1'; "
        f"GRANT ALL PRIVILEGES ON {BASELINE_DB}.* TO 'oma_user'@'localhost';"
    )
    subprocess.run(["mariadb", "--no-defaults", "-S", str(socket), "-u", "root", "-e", sql], check=True)
    env = baseline_env(stack)
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--log-level", "WARNING", "migrate"],
        cwd=tree,
        env={**os.environ, **stack.env(), **env},
        check=True,
    )
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of uncounted load before each run")
    parser.add_argument("--connections", default="64,512")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--configs", default="1,2,nginx", help="cells to run: 1 process, 2 granian workers, 2 behind nginx"
    )
    args = parser.parse_args()
    conns = [int(x) for x in args.connections.split(",")]
    prefix = c.run_id("matrix")
    job_ids = [f"{prefix}-{i:05d}" for i in range(args.jobs)]
    lua = c.STATE_DIR / f"{prefix}.lua"
    rows: list[list] = []
    p1, p2 = c.API_PORT + 30, c.API_PORT + 31
    with c.bench_stack() as stack:
        write_lua(lua, job_ids, 2)
        with processes([ours_cmd(p1, 1)]) as procs:
            _wait(f"http://127.0.0.1:{p1}/api/v1/telemetry/backup/x", procs[0], "the API")
            c.log(f"creating and priming {len(job_ids)} jobs")
            asyncio.run(c.create_jobs(f"http://127.0.0.1:{p1}", job_ids))
        cells = {
            "1": ("1 process", [ours_cmd(p1, 1)], [bare_cmd(p1, 1)], False),
            "2": ("2 processes (granian workers)", [ours_cmd(p1, 2)], [bare_cmd(p1, 2)], False),
            "nginx": (
                "2 processes behind nginx", [ours_cmd(p1, 1), ours_cmd(p2, 1)], [bare_cmd(p1, 1), bare_cmd(p2, 1)], True
            ),
        }  # fmt: skip
        for name, ours, bare, behind_nginx in (cells[key] for key in args.configs.split(",")):
            for kind, cmds in (("ours", ours), ("bare", bare)):
                with processes(cmds) as procs:
                    for proc, cmd in zip(procs, cmds, strict=True):
                        port = cmd[0][cmd[0].index("--port") + 1]
                        _wait(f"http://127.0.0.1:{port}/api/v1/telemetry/backup/x", proc, kind)
                    with (
                        nginx(stack, [p1, p2])
                        if behind_nginx
                        else contextlib.nullcontext(f"http://127.0.0.1:{p1}") as url
                    ):
                        for n in conns:
                            c.log(f"{name}, {kind}, {n} connections")
                            r = measure(url, lua, args, n, prefix if kind == "ours" else None)
                            rows.append([name, n, kind, r])
        if not args.skip_baseline:
            tree = baseline_worktree(args.baseline_ref)
            env = prepare_baseline(stack, tree)
            base_ids = [f"{prefix}-prev-{i:05d}" for i in range(args.jobs)]
            base_lua = c.STATE_DIR / f"{prefix}-prev.lua"
            write_lua(base_lua, base_ids, 2)
            cmd = ours_cmd(p1, 1, cwd=tree, env=env, name="previous")
            with processes([cmd]) as procs:
                _wait(f"http://127.0.0.1:{p1}/api/v1/telemetry/backup/x", procs[0], "the previous commit's API")
                asyncio.run(c.create_jobs(f"http://127.0.0.1:{p1}", base_ids))
                for n in conns:
                    c.log(f"previous commit {args.baseline_ref}, {n} connections")
                    r = measure(f"http://127.0.0.1:{p1}", base_lua, args, n, f"{prefix}-prev", "sendense_prev")
                    rows.append([f"previous commit {args.baseline_ref}, 1 process", n, "previous", r])
            base_lua.unlink(missing_ok=True)
        c.cleanup_jobs(prefix)
        lua.unlink(missing_ok=True)

    print(c.machine_note())
    table = []
    bare = {(name, n): r for name, n, kind, r in rows if kind == "bare"}
    ours_1 = {n: r for name, n, kind, r in rows if kind == "ours" and name == "1 process"}
    for name, n, kind, r in rows:
        if kind == "bare":
            continue
        ref = bare.get((name, n)) or bare.get(("1 process", n))
        ratio = c.ratio(r["rps"], ref["rps"]) if ref else float("nan")
        table.append(
            [name, n, r["rps"], r["p50_ms"], r["p99_ms"], r["non2xx"], r.get("lost", "-"),
             ref["rps"] if ref else "-", ref["p99_ms"] if ref else "-", f"{ratio:.1%}"]
        )  # fmt: skip
    print(
        c.table(
            [
                "configuration",
                "conns",
                "req/s",
                "p50 ms",
                "p99 ms",
                "non-2xx",
                "lost",
                "bare req/s",
                "bare p99",
                "ours / bare",
            ],
            table,
            f"\nSingle updates, wrk -t2 -d{int(args.duration)}s, {args.jobs} jobs; bare = bare Litestar + msgspec, "
            "same process count (and the same nginx)",
        )  # fmt: skip
    )
    prev = {n: r for name, n, kind, r in rows if kind == "previous"}
    if prev:
        print(
            c.table(
                [
                    "conns",
                    "this commit req/s",
                    "p99 ms",
                    f"{args.baseline_ref} req/s",
                    "p99 ms",
                    f"this / {args.baseline_ref}",
                ],
                [
                    [
                        n,
                        ours_1[n]["rps"],
                        ours_1[n]["p99_ms"],
                        prev[n]["rps"],
                        prev[n]["p99_ms"],
                        f"{c.ratio(ours_1[n]['rps'], prev[n]['rps']):.1%}",
                    ]
                    for n in conns
                    if n in prev and n in ours_1
                ],
                f"\nThis commit against {args.baseline_ref}, 1 process, measured in the same run",
            )  # fmt: skip
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
