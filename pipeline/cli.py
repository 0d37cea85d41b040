"""The composition root: the `sendense` console script (api, scheduler, dashboard, migrate, reconcile,
import, simulate, demo). Each command reads the settings once and builds its process from them; nothing below this
module reads the environment or picks an implementation on its own."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.settings import Settings, is_loopback, load_settings

__all__ = ["main"]

log = logging.getLogger("sendense")
PROJECT_DIR = Path(__file__).resolve().parent.parent


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _state_dir(settings: Settings) -> Path:
    return PROJECT_DIR / settings.runtime.state_dir  # an absolute state_dir stays as it is


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    host, port = args.host or settings.api.host, args.port or settings.api.port
    if not settings.api.auth_enabled and not is_loopback(host):
        log.error(
            "refusing to serve on %s without tokens: set SENDENSE_AGENT_TOKENS (and SENDENSE_VIEWER_TOKENS, "
            "SENDENSE_OPERATOR_TOKENS), or listen on 127.0.0.1",
            host,
        )
        return 2
    if not settings.api.auth_enabled:
        log.warning("no tokens configured: serving without authentication on %s (loopback only)", host)
    # API processes keep nothing but caches: any number may serve (granian workers share one port,
    # several processes or hosts sit behind nginx, see infra/nginx.sh), so there is no single-process guard.
    server = args.server or settings.api.server
    workers = args.workers or settings.api.workers
    log.info(
        "API on http://%s:%d/api/v1 (OpenAPI: /api/v1/schema), server %s, %d worker process(es)",
        host,
        port,
        server,
        workers,
    )
    if workers > 1:
        # Several workers on one port: each writes its metrics to files here and a scrape of any of
        # them adds all up (prometheus_client's multi-process mode). Emptied first: stale files of
        # an earlier run would be added too.
        metrics_dir = _state_dir(settings) / f"metrics-api-{port}"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if server == "granian":
        from granian import Granian
        from granian.constants import Interfaces
        from granian.http import HTTP1Settings

        Granian(
            "api.app:create_app",
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            factory=True,
            log_access=False,
            workers=workers,
            backlog=settings.api.backlog,
            # Bounded: a client that opens a connection and sends nothing (or trickles its headers)
            # is dropped after this, so idle connections cannot pile up and lock others out.
            backpressure=settings.api.max_concurrency,
            http1_settings=HTTP1Settings(header_read_timeout=int(settings.api.header_timeout * 1000)),
        ).serve()
    else:
        import uvicorn

        uvicorn.run(
            "api.app:create_app",
            host=host,
            port=port,
            factory=True,
            log_level="warning",
            access_log=False,
            workers=workers if workers > 1 else None,
            backlog=settings.api.backlog,
            timeout_keep_alive=int(settings.api.header_timeout),
            limit_concurrency=settings.api.max_concurrency,
        )
    return 0


def cmd_scheduler(settings: Settings, _: argparse.Namespace) -> int:
    from pipeline.scheduler import build_scheduler

    scheduler, jobs = build_scheduler(settings)
    s = settings.scheduler
    if s.metrics_port:
        from prometheus_client import start_http_server

        try:
            start_http_server(s.metrics_port, addr=s.metrics_host, registry=jobs.metrics.registry)
            log.info("scheduler metrics on http://%s:%d/metrics", s.metrics_host, s.metrics_port)
        except OSError as exc:  # another scheduler on this host has the port: this one runs without
            log.warning("no metrics from this scheduler: port %d is taken (%s)", s.metrics_port, exc)
    log.info(
        "scheduler: rollup every %.0f s, purge every %.0f s, reaper every %.0f s (stale after %.0f s)",
        s.rollup_interval,
        s.purge_interval,
        s.reaper_interval,
        s.stale_after,
    )
    if jobs.daily is not None:
        r = settings.reports
        log.info(
            "scheduler: daily report from %s %s to %d recipients", r.daily_time, r.time_zone, len(r.daily_recipients)
        )
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=True))
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        jobs.close()
    return 0


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    from alembic import command
    from alembic.config import Config

    from pipeline.db.engine import describe_url
    from pipeline.tsdb.schema import ensure_influx_schema

    config = Config(str(PROJECT_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_DIR / "migrations"))
    config.attributes["url"] = settings.mysql.url
    config.attributes["configure_logging"] = False
    command.upgrade(config, "head")
    log.info("MySQL schema at head (%s)", describe_url(settings.mysql.url))
    for line in ensure_influx_schema(settings.influx):
        log.info("InfluxDB %s: %s", settings.influx.database, line)
    return 0


def _summary_services(settings: Settings, batch: int | None):
    from pipeline.db.engine import create_db_engine
    from pipeline.jobs.store import JobStore
    from pipeline.reconcile.store import SummaryReconciler

    engine = create_db_engine(settings.mysql, pool_size=2)
    store = JobStore(engine)
    s = settings.scheduler
    reconciler = SummaryReconciler(engine, store, batch_size=batch or s.reconcile_batch, overlap=s.reconcile_overlap)
    return engine, store, reconciler


def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    import json

    engine, _, reconciler = _summary_services(settings, args.batch)
    mode = "all" if args.all else "changed"

    def progress(report) -> None:
        print(
            f"reconcile: {report.machines_checked:,} machines checked, {report.machines_corrected:,} corrected",
            file=sys.stderr,
            flush=True,
        )

    try:
        report = reconciler.run(mode, dry_run=args.check, progress=progress)
    finally:
        engine.dispose()
    print(json.dumps(report.as_dict(), indent=2))
    verb = "would correct" if args.check else "corrected"
    print(
        f"reconcile ({mode}): {report.machines_checked:,} machines checked, {verb} {report.machines_corrected:,} "
        f"({report.corrections_total:,} fields), {report.machines_created:,} machines known only from their jobs",
        file=sys.stderr,
    )
    return 1 if args.check and report.corrections_total else 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from pipeline.reconcile.importer import HistoryImporter, csv_rows, mysql_rows

    engine, store, reconciler = _summary_services(settings, None)
    importer = HistoryImporter(engine, store, reconciler, settings.scheduler.chart_max_points)
    if args.csv:
        path = Path(args.csv)
        if not path.is_file():
            log.error("no such file: %s", path)
            return 2
        rows = csv_rows(path)
    else:
        rows = mysql_rows(args.mysql_url, args.table, batch_size=args.batch)

    def progress(report) -> None:
        print(
            f"import: {report.read:,} rows read, {report.imported:,} imported, "
            f"{report.already_present:,} already present, {report.rejected:,} refused",
            file=sys.stderr,
            flush=True,
        )

    try:
        report = importer.run(rows, batch_size=args.batch, dry_run=args.dry_run, progress=progress)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    finally:
        engine.dispose()
    print(json.dumps(report.as_dict(), indent=2, default=str))
    for rejection in report.rejections[:20]:
        print(f"refused row {rejection['row']} ({rejection['id']}): {rejection['reason']}", file=sys.stderr)
    return 1 if report.rejected else 0


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.agent.simulator import SimulatorConfig, run_simulator

    config = SimulatorConfig(
        api_url=args.api or f"http://127.0.0.1:{settings.api.port}",
        token=args.token or (settings.api.agent_tokens[0] if settings.api.agent_tokens else None),
        jobs=args.jobs,
        concurrency=args.concurrency,
        update_interval=args.interval,
        min_duration=args.min_duration,
        max_duration=args.max_duration,
        failure_rate=args.failure_rate,
        seed=args.seed,
        leave_pending=tuple(args.leave_pending or ()),
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        report = await run_simulator(config, stop=stop, progress=lambda msg: log.info("%s", msg))
        log.info("simulator finished: %s", report)

    asyncio.run(run())
    return 0


def _scenario_timings(settings: Settings, show_for: float = 60.0):
    from pipeline.agent.scenarios import Timings

    s = settings
    rollup, oldest = s.scheduler.rollup_interval, s.ingest.max_timestamp_age
    return Timings.from_settings(s.alerts.rules, s.alerts.evaluate_interval, rollup, oldest, show_for=show_for)


def cmd_scenarios(settings: Settings, args: argparse.Namespace) -> int:
    """Stage the demo's alert scenarios through the API until stopped (pipeline/agent/staging.py)."""
    from pipeline.agent.staging import ScenarioConfig, run_scenarios

    timings = _scenario_timings(settings, args.show_for)
    # Setting an RPO is an operator's write (SENDENSE_OPERATOR_TOKENS, generated by infra/run.sh).
    operators = settings.api.operator_tokens
    config = ScenarioConfig(
        api_url=args.api or f"http://127.0.0.1:{settings.api.port}",
        token=args.token or (settings.api.agent_tokens[0] if settings.api.agent_tokens else None),
        operator_token=args.operator_token or (operators[0] if operators else None),
        timings=timings,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        report = await run_scenarios(config, stop=stop, progress=lambda msg: log.info("%s", msg))
        log.info("scenarios stopped: %s", report)

    asyncio.run(run())
    return 0


def cmd_dashboard(settings: Settings, args: argparse.Namespace) -> int:
    from dashboards import serve

    return serve(settings, port=args.port, host=args.host)


def cmd_hash_password(_settings: Settings, args: argparse.Namespace) -> int:
    """Print `name:role:hash` for SENDENSE_DASHBOARD_USERS; the password is read from stdin or prompted for."""
    import getpass

    from dashboards.auth import hash_password, is_valid_name

    if not is_valid_name(args.user):
        log.error("a user name is 1-255 characters without ':', ',' or control characters")
        return 2
    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("Password: ")
    if len(password) < 8:
        log.error("a password of at least 8 characters, please")
        return 2
    print(f"{args.user}:{args.role}:{hash_password(password)}")
    return 0


def wait_until_live(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200; fail early if `proc` (the server) exits first."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[-1] if proc.args else 'the server'} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Migrate, then run API, scheduler, dashboard and simulator as child processes until Ctrl-C."""
    if cmd_migrate(settings, args) != 0:
        return 1
    from pipeline.agent.scenarios import SCENARIO_PREFIX, demo_alert_environment, staging_schedule

    # Thresholds short enough that the staged alerts fire within minutes (the children read them).
    alerts = settings.alerts
    shortened = demo_alert_environment(alerts.evaluate_interval, alerts.hold_down, alerts.rules)
    if not args.no_scenarios:
        for name, value in shortened.variables.items():
            os.environ[name] = value
    exe = [sys.executable, "-m", "pipeline.cli"]
    children: list[tuple[str, subprocess.Popen]] = []
    logs = _state_dir(settings) / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def spawn(name: str, *extra: str, env: dict[str, str] | None = None) -> None:
        out = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the child's lifetime
        # Own sessions: Ctrl-C reaches only this supervisor, which stops the children in order.
        proc = subprocess.Popen(
            [*exe, *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **env} if env else None,
        )
        children.append((name, proc))

    processes = max(1, args.api_processes)
    # One API process listens on the API port itself; N of them listen on the next N ports, and
    # nginx (infra/nginx.sh) takes the API port in front of them.
    ports = [settings.api.port] if processes == 1 else [settings.api.port + 1 + n for n in range(processes)]
    for n, port in enumerate(ports):
        spawn("api" if processes == 1 else f"api-{n + 1}", "api", "--port", str(port))
    try:
        for (_, proc), port in zip(children, ports, strict=True):
            wait_until_live(f"http://127.0.0.1:{port}/api/v1/health/live", 30.0, proc)
    except RuntimeError as exc:
        log.error("an API process did not start (%s); see %s/", exc, logs)
        for _, proc in children:
            proc.terminate()
        return 1
    nginx = processes > 1
    if nginx:
        env = {
            **os.environ,
            "SENDENSE_NGINX_PORT": str(settings.api.port),
            "SENDENSE_API_UPSTREAMS": ",".join(f"127.0.0.1:{p}" for p in ports),
        }
        if subprocess.run(["bash", str(PROJECT_DIR / "infra" / "nginx.sh"), "start"], env=env).returncode != 0:
            log.error("nginx did not start in front of the API processes")
            for _, proc in children:
                proc.terminate()
            return 1
    spawn("scheduler", "scheduler")
    from dashboards import AVAILABLE as dashboard_available

    if dashboard_available:
        # The dashboard reads with the first viewer token and acts for its logged-in operators with the
        # first operator token, unless it was given its own.
        dash_env = {}
        if not settings.dashboard.token and settings.api.viewer_tokens:
            dash_env["SENDENSE_DASHBOARD_TOKEN"] = settings.api.viewer_tokens[0]
        if not settings.dashboard.operator_token and settings.api.operator_tokens:
            dash_env["SENDENSE_DASHBOARD_OPERATOR_TOKEN"] = settings.api.operator_tokens[0]
        spawn("dashboard", "dashboard", env=dash_env)
    leave = ["--leave-pending", f"{SCENARIO_PREFIX}-"]
    spawn("simulator", "simulate", "--jobs", "0", "--concurrency", str(args.concurrency), *leave)
    if not args.no_scenarios:
        spawn("scenarios", "scenarios")
    api = f"http://127.0.0.1:{settings.api.port}"
    print("\nSendense Telemetry is running:")
    print(f"  API            {api}/api/v1/backups   (OpenAPI: {api}/api/v1/schema)")
    if nginx:
        print(f"                 nginx in front of {processes} API processes on ports {ports[0]}-{ports[-1]}")
    print(f"  Readiness      {api}/api/v1/health/ready")
    if dashboard_available:
        print(f"  Dashboard      http://127.0.0.1:{settings.dashboard.port}/")
        if not any(entry.split(":")[1:2] == ["operator"] for entry in settings.dashboard.users):
            print("                 read-only: to acknowledge and silence from it, add an operator login")
            print("                 (sendense hash-password NAME --role operator; docs/dashboard.md)")
    print(f"  InfluxDB       {settings.influx.url}  (database {settings.influx.database})")
    if settings.alerts.alertmanager_url:
        print(f"  Alertmanager   {settings.alerts.alertmanager_url}  (docs/alerts.md)")
    if settings.api.agent_tokens:
        print(f"  Agent token    {settings.api.agent_tokens[0]}")
    if settings.api.viewer_tokens:
        print(f"  Viewer token   {settings.api.viewer_tokens[0]}")
    if settings.api.operator_tokens:
        print(f"  Operator token {settings.api.operator_tokens[0]}   (acknowledge, silence, alert rules, machines)")
    print(f"  Logs           {logs}/")
    if not args.no_scenarios:
        # The children's settings (the thresholds shortened): when the staged alerts fire and resolve.
        fired, resolved = staging_schedule(_scenario_timings(load_settings()))
        print(f"  Alerts         staged on machines {SCENARIO_PREFIX}-*: every rule but rollup_set_aside and")
        print(f"                 pipeline_unhealthy fires within ~{fired:.0f} s, most resolve within ~{resolved:.0f} s")
        print(f"                 ({logs}/scenarios.log); shortened for the demo:")
        for line in shortened.lines or ["nothing: your own SENDENSE_ALERT_* settings are kept"]:
            print(f"                   {line}")
    print("Press Ctrl-C to stop.\n", flush=True)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            for name, proc in children:
                if proc.poll() is not None:
                    log.error("%s exited with %s; see %s/%s.log", name, proc.returncode, logs, name)
                    stopping = True
            time.sleep(0.5)
    finally:
        # Reverse order: the simulator stops first, the API last so it answers what it has taken.
        for _, proc in reversed(children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if nginx:
            subprocess.run(["bash", str(PROJECT_DIR / "infra" / "nginx.sh"), "stop"], check=False)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sendense", description=__doc__)
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="overrides SENDENSE_LOG_LEVEL",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    api = sub.add_parser("api", help="run the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument("--server", choices=["granian", "uvicorn"])
    api.add_argument("--workers", type=int, help="worker processes sharing the port (default SENDENSE_API_WORKERS)")
    api.set_defaults(func=cmd_api)
    sub.add_parser("scheduler", help="run the rollup, purge and reaper jobs").set_defaults(func=cmd_scheduler)
    sub.add_parser("migrate", help="create or upgrade the MySQL schema and the InfluxDB database").set_defaults(
        func=cmd_migrate
    )
    rec = sub.add_parser(
        "reconcile", help="recompute machines' summaries from backup_jobs (those changed outside the pipeline)"
    )
    rec.add_argument("--all", action="store_true", help="every machine (also finds jobs deleted or moved)")
    rec.add_argument("--check", action="store_true", help="report what is wrong, change nothing; exit 1 if any")
    rec.add_argument("--batch", type=int, help="machines per transaction (default SENDENSE_RECONCILE_BATCH)")
    rec.set_defaults(func=cmd_reconcile)
    imp = sub.add_parser("import", help="bring an existing job history (the job sheet's backup_jobs rows) in")
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="a CSV file whose header names backup_jobs columns")
    source.add_argument("--mysql-url", help="SQLAlchemy URL of the database holding the table")
    imp.add_argument("--table", default="backup_jobs", help="the table to read with --mysql-url")
    imp.add_argument("--batch", type=int, default=1000, help="rows per transaction")
    imp.add_argument("--dry-run", action="store_true", help="validate and count, write nothing")
    imp.set_defaults(func=cmd_import)
    sim = sub.add_parser("simulate", help="run simulated backup agents against the API")
    sim.add_argument("--api")
    sim.add_argument("--token")
    sim.add_argument("--jobs", type=int, default=0, help="jobs in total (0: until stopped)")
    sim.add_argument("--concurrency", type=int, default=4)
    sim.add_argument("--interval", type=float, default=1.0, help="seconds between updates")
    sim.add_argument("--min-duration", type=float, default=60.0)
    sim.add_argument("--max-duration", type=float, default=180.0)
    sim.add_argument("--failure-rate", type=float, default=0.1)
    sim.add_argument("--seed", type=int)
    sim.add_argument(
        "--leave-pending", action="append", metavar="PREFIX", help="do not pick up pending jobs whose id starts so"
    )
    sim.set_defaults(func=cmd_simulate)
    scen = sub.add_parser("scenarios", help="stage the demo's alert scenarios through the API until stopped")
    scen.add_argument("--api")
    scen.add_argument("--token", help="an agent token (default: the first of SENDENSE_AGENT_TOKENS)")
    scen.add_argument("--operator-token", help="an operator token, to set the staged machines' RPO")
    scen.add_argument("--show-for", type=float, default=60.0, help="seconds a staged condition lasts before recovery")
    scen.set_defaults(func=cmd_scenarios)
    dash = sub.add_parser("dashboard", help="run the operators' dashboard (Bokeh server)")
    dash.add_argument("--port", type=int)
    dash.add_argument("--host", help="address to listen on (default SENDENSE_DASHBOARD_HOST, 127.0.0.1)")
    dash.set_defaults(func=cmd_dashboard)
    hasher = sub.add_parser("hash-password", help="hash a dashboard user's password for SENDENSE_DASHBOARD_USERS")
    hasher.add_argument("user", help="the user's name (shown as who acknowledged or silenced)")
    hasher.add_argument(
        "--role",
        choices=("viewer", "operator"),
        default="viewer",
        help="viewer (reads; the default) or operator (also acknowledges and silences alerts)",
    )
    hasher.set_defaults(func=cmd_hash_password)
    demo = sub.add_parser("demo", help="migrate, then run API, scheduler, dashboard and simulator")
    demo.add_argument("--concurrency", type=int, default=6)
    demo.add_argument(
        "--api-processes", type=int, default=1, help="API processes; more than 1 puts nginx in front of them"
    )
    demo.add_argument(
        "--no-scenarios", action="store_true", help="no staged alerts, and the alert thresholds left as configured"
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ValueError as exc:
        _setup_logging("INFO")
        log.error("%s", exc)
        return 2
    _setup_logging((args.log_level or settings.runtime.log_level).upper())
    return int(args.func(settings, args) or 0)


if __name__ == "__main__":
    sys.exit(main())
