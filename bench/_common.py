"""Shared by the benchmark scripts: the bench DevStack, data helpers, InfluxDB/MySQL access, wrk, tables.

Every benchmark uses its own DevStack (ports 28086 / 23306 / 28082, state in `.state-bench/`) so that it
never collides with the test suite (`.state-test/`) or the demo (`.state/`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
if str(PROJECT_DIR) not in sys.path:  # `python bench/x.py` puts bench/ first, not the project
    sys.path.insert(0, str(PROJECT_DIR))

from tests.support.devstack import DevStack  # noqa: E402

# Overridable so that two checkouts on one machine can run benchmarks side by side.
STATE_DIR = Path(os.environ.get("SENDENSE_BENCH_STATE_DIR", PROJECT_DIR / ".state-bench"))
INFLUX_PORT = int(os.environ.get("SENDENSE_BENCH_INFLUX_PORT", "28086"))
MYSQL_PORT = int(os.environ.get("SENDENSE_BENCH_MYSQL_PORT", "23306"))
API_PORT = int(os.environ.get("SENDENSE_BENCH_API_PORT", "28082"))
BARE_PORT = int(os.environ.get("SENDENSE_BENCH_BARE_PORT", "28092"))
AGENT_TOKEN = "test-agent-token"
AGENT_HEADERS = {"Authorization": f"Bearer {AGENT_TOKEN}"}
INFLUX_DB = "sendense"
RAW_RP = "raw_telemetry"
UPDATE_BODY = {
    "bytes_transferred": 1,
    "total_bytes": 100,
    "transfer_speed_bps": 5,
    "progress_percent": 1.0,
    "current_phase": "transferring",
}


def msgspec_json(obj: object) -> str:
    """Compact JSON text (what agents send)."""
    import msgspec

    return msgspec.json.encode(obj).decode()


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_id(prefix: str) -> str:
    """A unique, InfluxDB-regex-safe id prefix for this run's jobs, e.g. `bench-http-1732873000-a1b2`."""
    return f"bench-{prefix}-{int(time.time())}-{secrets.token_hex(2)}"


def make_stack(extra_env: dict[str, str] | None = None) -> DevStack:
    return DevStack(
        state_dir=STATE_DIR,
        influx_port=INFLUX_PORT,
        mysql_port=MYSQL_PORT,
        api_port=API_PORT,
        extra_env=dict(extra_env or {}),
    )


def logs_dir() -> Path:
    path = STATE_DIR / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def bench_stack(extra_env: dict[str, str] | None = None) -> Iterator[DevStack]:
    """Servers up and migrated; on exit, stops the servers this call started (a running stack is reused)."""
    stack = make_stack(extra_env)
    stack.apply_env()
    log(f"starting InfluxDB :{INFLUX_PORT} and MariaDB :{MYSQL_PORT} (state {STATE_DIR})")
    stack.start_servers()
    try:
        stack.migrate()
        yield stack
    finally:
        log("stopping the servers this run started: " + (", ".join(stack.started) or "none"))
        stack.stop_servers()


@contextlib.contextmanager
def api_process(stack: DevStack, server: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    log_path = logs_dir() / f"api-{server}.log"
    log(f"starting the API ({server}) on :{stack.api_port}, log {log_path}")
    proc = stack.start_api(server=server, log_path=log_path, env=env)
    try:
        yield proc
    finally:
        code = DevStack.stop_process(proc)
        log(f"API stopped (exit code {code})")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc; Linux only)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def pss_mb(pid: int) -> float:
    """Proportional set size: RSS with pages shared between processes (a fork's) split between them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss_mb(pid)


def tree_rss_mb(pid: int) -> float:
    """Memory of a process plus its direct children (granian's worker is a forked child of `sendense api`).

    Summed as PSS, so that pages the fork shares with its parent are not counted twice.
    """
    return pss_mb(pid) + sum(pss_mb(child) for child in children(pid))


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its direct children (granian runs its worker as a child process)."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children(pid))


def server_pids() -> dict[str, int]:
    """PIDs of the bench InfluxDB and MariaDB (from the infra scripts' pid files)."""
    pids = {}
    files = (("influxd", STATE_DIR / "influxdb/influxd.pid"), ("mariadbd", STATE_DIR / "mariadb/mariadbd.pid"))
    for name, path in files:
        with contextlib.suppress(OSError, ValueError):
            pids[name] = int(path.read_text().strip())
    return pids


# --- API helpers ----------------------------------------------------------------------------------


async def create_jobs(api_url: str, job_ids: Sequence[str], *, concurrency: int = 4, prime: bool = True) -> None:
    """Create jobs through `POST /api/v1/backups` and (prime=True) send each one running update."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for job_id in job_ids:
        queue.put_nowait(job_id)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                job_id = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = {"vm_name": f"vm {job_id}", "backup_type": "full", "repository_id": "bench-repo"}
            body["backup_id"] = job_id
            r = await client.post("/api/v1/backups", json=body)
            if r.status_code != 201:
                raise RuntimeError(f"creating {job_id}: {r.status_code} {r.text[:200]}")
            if prime:
                r = await client.post(f"/api/v1/telemetry/backup/{job_id}", json=UPDATE_BODY)
                if r.status_code != 202:
                    raise RuntimeError(f"priming {job_id}: {r.status_code} {r.text[:200]}")

    async with httpx.AsyncClient(base_url=api_url, headers=AGENT_HEADERS, timeout=30.0) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))


def readiness(api_url: str) -> dict:
    return httpx.get(f"{api_url}/api/v1/health/ready", timeout=10.0).json()


def points_written(api_url: str) -> int:
    """Points this API process has written to InfluxDB (its readiness counter)."""
    return int(readiness(api_url)["checks"]["group_commit"]["points_written"])


# --- InfluxDB and MySQL helpers -------------------------------------------------------------------


def influx_query(
    q: str, *, epoch: str = "ms", method: str = "GET", params: dict | None = None, db: str | None = None
) -> list[dict]:
    args = {"q": q, "db": db or INFLUX_DB, "epoch": epoch, **(params or {})}
    url = f"http://127.0.0.1:{INFLUX_PORT}/query"
    r = httpx.post(url, data=args, timeout=300.0) if method == "POST" else httpx.get(url, params=args, timeout=300.0)
    r.raise_for_status()
    body = r.json()
    for result in body.get("results", []):
        if "error" in result:
            raise RuntimeError(f"InfluxDB: {result['error']} (query {q[:200]})")
    return body.get("results", [])


def influx_count(job_regex_prefix: str, *, exact: bool = False, db: str | None = None) -> int:
    """Number of job_telemetry points (all series) whose job_id starts with (or is) `job_regex_prefix`."""
    assert re.fullmatch(r"[A-Za-z0-9_-]+", job_regex_prefix), job_regex_prefix
    end = "$" if exact else ""
    results = influx_query(
        f'SELECT count(transfer_speed_bps) FROM "{RAW_RP}"."job_telemetry" WHERE job_id =~ /^{job_regex_prefix}{end}/',
        db=db,
    )
    series = results[0].get("series", []) if results else []
    return int(series[0]["values"][0][1]) if series else 0


def influx_drop_jobs(job_regex_prefix: str) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", job_regex_prefix), job_regex_prefix
    influx_query(f"DROP SERIES FROM job_telemetry WHERE job_id =~ /^{job_regex_prefix}/", method="POST")


def influx_write(body: bytes | str, client: httpx.Client | None = None) -> None:
    url = f"http://127.0.0.1:{INFLUX_PORT}/write"
    params = {"db": INFLUX_DB, "rp": RAW_RP, "precision": "ns"}
    r = (client or httpx).post(url, params=params, content=body, timeout=300.0)
    if r.status_code != 204:
        raise RuntimeError(f"InfluxDB write failed: {r.status_code} {r.text[:300]}")


def mysql_engine():
    from pipeline.db.engine import create_db_engine
    from pipeline.settings import MySQLSettings

    return create_db_engine(MySQLSettings(), pool_size=4)


def mysql_delete_jobs(job_id_prefix: str) -> int:
    from sqlalchemy import delete

    from pipeline.db.tables import backup_jobs, job_telemetry_snapshots

    engine = mysql_engine()
    try:
        with engine.begin() as conn:
            conn.execute(
                delete(job_telemetry_snapshots).where(job_telemetry_snapshots.c.job_id.like(f"{job_id_prefix}%"))
            )
            return conn.execute(delete(backup_jobs).where(backup_jobs.c.id.like(f"{job_id_prefix}%"))).rowcount
    finally:
        engine.dispose()


def cleanup_jobs(job_id_prefix: str) -> None:
    """Remove this run's series from InfluxDB and its rows from MySQL (keeps the bench stack small)."""
    log(f"cleaning up {job_id_prefix}* (use --keep-data to keep it)")
    influx_drop_jobs(job_id_prefix)
    mysql_delete_jobs(job_id_prefix)


# --- wrk --------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> dict:
    """req/s, latency percentiles (ms), total and non-2xx counts, socket errors, from `wrk --latency`."""
    result: dict = {"non2xx": 0, "socket_errors": {}}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", output)
    if not m:
        raise ValueError(f"unexpected wrk output:\n{output}")
    result["requests"] = int(m.group(1))
    result["duration_s"] = _ms(m.group(2) + m.group(3)) / 1000
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    for pct in ("50", "75", "90", "99"):
        pm = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M)
        if pm:
            result[f"p{pct}_ms"] = _ms(pm.group(1))
    lm = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", output)
    if lm:
        result["avg_ms"], result["max_ms"] = _ms(lm.group(1)), _ms(lm.group(3))
    nm = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if nm:
        result["non2xx"] = int(nm.group(1))
    sm = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if sm:
        result["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, sm.groups()), strict=True))
    result["ok"] = result["requests"] - result["non2xx"]
    return result


def run_wrk(
    url: str, *, script: Path, duration: float, connections: int, threads: int, timeout: str = "10s"
) -> tuple[dict, str]:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{int(duration)}s",
        f"--timeout={timeout}",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    log(" ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return parse_wrk(proc.stdout), proc.stdout


# --- statistics and output --------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def summary_ms(samples_s: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms) if ms else float("nan"),
        "mean": statistics.fmean(ms) if ms else float("nan"),
    }


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            if v != v:  # NaN
                return "n/a"
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    out = []
    if title:
        out.append(title)
    out.append(line)
    out.append("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    out.append(line)
    for r in cells:
        out.append(
            "| "
            + " | ".join((c.ljust(w) if i == 0 else c.rjust(w)) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            + " |"
        )
    out.append(line)
    return "\n".join(out)


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def busy_processes(sample_s: float = 1.0, threshold: float = 0.05) -> list[tuple[str, float]]:
    """Other processes using CPU right now (cores over `sample_s`): the noise on a shared machine."""

    def snapshot() -> dict[int, float]:
        out = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                out[int(entry.name)] = cpu_seconds(int(entry.name))
        return out

    first = snapshot()
    time.sleep(sample_s)
    second = snapshot()
    busy = []
    for pid, cpu in second.items():
        used = (cpu - first.get(pid, cpu)) / sample_s
        if used >= threshold and pid != os.getpid():
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                busy.append((cmd.strip()[:90], used))
    return sorted(busy, key=lambda b: -b[1])


def machine_note() -> str:
    """CPUs, load average and the busy processes at the start of a run (results are only as quiet as this)."""
    load = os.getloadavg()
    lines = [f"machine: {os.cpu_count()} CPUs, load average before the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"]
    try:
        head = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "status", "--porcelain", "--", "pipeline", "api", "migrations"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        lines.append(f"code: HEAD {head}" + (", with uncommitted changes in pipeline/api/migrations" if dirty else ""))
    except OSError:
        pass
    busy = busy_processes()
    if busy:
        lines.append("other processes busy at the start (cores): " + "; ".join(f"{u:.2f} {cmd}" for cmd, u in busy))
    else:
        lines.append("no other process busy at the start")
    return "\n".join(lines)


def add_api_env_option(parser) -> None:
    """`--api-env NAME=VALUE` (repeatable): run the API with other settings, to attribute time to a part."""
    parser.add_argument(
        "--api-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the API process (e.g. SENDENSE_STATE_FLUSH_INTERVAL=5), repeatable",
    )


def api_env_from(args) -> dict[str, str]:
    """The --api-env overrides as a dict; prints the machine note and the overrides first."""
    api_env = dict(item.split("=", 1) for item in args.api_env)
    print(machine_note())
    if api_env:
        print(f"API environment overrides: {api_env}")
    return api_env
