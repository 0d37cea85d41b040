"""Every environment variable the pipeline reads, with its default and what it is for."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

__all__ = [
    "AlertSettings",
    "ApiSettings",
    "DashboardSettings",
    "IngestSettings",
    "InfluxSettings",
    "MySQLSettings",
    "ReportSettings",
    "RuntimeSettings",
    "SchedulerSettings",
    "Settings",
    "load_settings",
]


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses: the only binds allowed without credentials."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a whole number") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from None


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in os.environ.get(name, "").split(",") if item.strip())


@dataclass(frozen=True)
class InfluxSettings:
    """InfluxDB, spoken to through its v1 HTTP API (`/write`, `/query`)."""

    url: str = field(default_factory=lambda: _env("SENDENSE_INFLUX_URL", "http://127.0.0.1:8086"))
    """Base URL of InfluxDB's v1 HTTP API."""
    database: str = field(default_factory=lambda: _env("SENDENSE_INFLUX_DB", "sendense"))
    """Database holding `job_telemetry` and `job_summary`."""
    username: str = field(default_factory=lambda: _env("SENDENSE_INFLUX_USER", ""))
    """v1 user name (empty: no authentication)."""
    password: str = field(default_factory=lambda: _env("SENDENSE_INFLUX_PASSWORD", ""))
    """v1 password."""
    admin_username: str = field(default_factory=lambda: _env("SENDENSE_INFLUX_ADMIN_USER", ""))
    """v1 admin user for `sendense migrate` (creating the database and its policies needs one); empty:
    the user above."""
    admin_password: str = field(default_factory=lambda: _env("SENDENSE_INFLUX_ADMIN_PASSWORD", ""))
    """Its password."""
    token: str = field(default_factory=lambda: _env("SENDENSE_INFLUX_TOKEN", ""))
    """InfluxDB 2.x/3.x token for the v1-compatibility endpoints (sent as `Authorization: Token`)."""
    raw_rp: str = field(default_factory=lambda: _env("SENDENSE_INFLUX_RAW_RP", "raw_telemetry"))
    """Retention policy receiving raw `job_telemetry` points (the default policy of the database)."""
    raw_retention: str = field(default_factory=lambda: _env("SENDENSE_INFLUX_RAW_RETENTION", "30d"))
    """How long raw points survive if their job is never rolled up (InfluxQL duration)."""
    summary_rp: str = field(default_factory=lambda: _env("SENDENSE_INFLUX_SUMMARY_RP", "job_summaries"))
    """Retention policy keeping one `job_summary` point per finished job."""
    summary_retention: str = field(default_factory=lambda: _env("SENDENSE_INFLUX_SUMMARY_RETENTION", "INF"))
    """How long `job_summary` points are kept (InfluxQL duration, or INF)."""
    timeout: float = field(default_factory=lambda: _env_float("SENDENSE_INFLUX_TIMEOUT", 10.0))
    """Seconds before one HTTP request to InfluxDB is given up."""


@dataclass(frozen=True)
class MySQLSettings:
    """The relational store (MariaDB 10.6+ or MySQL 8)."""

    url: str = field(
        default_factory=lambda: _env(
            "SENDENSE_MYSQL_URL",
            "mysql+pymysql://oma_user:oma_password@127.0.0.1:3306/migratekit_oma?charset=utf8mb4",
        )
    )
    """SQLAlchemy URL; the defaults are the job sheet's database, user and password."""
    pool_size: int = field(default_factory=lambda: _env_int("SENDENSE_MYSQL_POOL_SIZE", 8))
    """Connections kept open per process."""
    connect_timeout: int = field(default_factory=lambda: _env_int("SENDENSE_MYSQL_CONNECT_TIMEOUT", 3))
    """Seconds to open a connection before the store counts as unavailable (503 to clients)."""
    query_timeout: int = field(default_factory=lambda: _env_int("SENDENSE_MYSQL_QUERY_TIMEOUT", 30))
    """Seconds one statement may take to answer before the connection is given up."""
    lock_wait_timeout: int = field(default_factory=lambda: _env_int("SENDENSE_MYSQL_LOCK_WAIT_TIMEOUT", 10))
    """Seconds a statement waits for a row lock (InnoDB's default is 50)."""


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP API."""

    host: str = field(default_factory=lambda: _env("SENDENSE_API_HOST", "127.0.0.1"))
    """Address the API listens on. Without tokens only loopback addresses are allowed."""
    port: int = field(default_factory=lambda: _env_int("SENDENSE_API_PORT", 8082))
    """Port the API listens on (the job sheet's 8082)."""
    agent_tokens: tuple[str, ...] = field(default_factory=lambda: _env_list("SENDENSE_AGENT_TOKENS"))
    """Comma-separated bearer tokens that may read, create jobs and write telemetry."""
    viewer_tokens: tuple[str, ...] = field(default_factory=lambda: _env_list("SENDENSE_VIEWER_TOKENS"))
    """Comma-separated bearer tokens that may only read."""
    operator_tokens: tuple[str, ...] = field(default_factory=lambda: _env_list("SENDENSE_OPERATOR_TOKENS"))
    """Comma-separated bearer tokens that may read, acknowledge and silence alerts, change alert rules,
    register machines and set their RPO (not create jobs or send telemetry)."""
    server: str = field(default_factory=lambda: _env("SENDENSE_API_SERVER", "granian"))
    """ASGI server used by `sendense api`: granian or uvicorn."""
    workers: int = field(default_factory=lambda: _env_int("SENDENSE_API_WORKERS", 1))
    """Worker processes of one `sendense api`, sharing its port (each a full, stateless API)."""
    metrics_dir: str = field(default_factory=lambda: _env("PROMETHEUS_MULTIPROC_DIR", ""))
    """prometheus_client's multi-process directory, set by `sendense api --workers N` for its workers
    (the library reads the same variable); empty: each process serves only its own metrics."""
    backlog: int = field(default_factory=lambda: _env_int("SENDENSE_API_BACKLOG", 2048))
    """Listen backlog: connections the kernel queues while every worker is busy."""
    max_concurrency: int = field(default_factory=lambda: _env_int("SENDENSE_API_MAX_CONCURRENCY", 4096))
    """Requests (connections, for granian) one worker serves at once; more wait in the backlog."""
    rpo_default: int = field(default_factory=lambda: _env_int("SENDENSE_RPO_DEFAULT", 86_400))
    """Recovery-point objective (seconds) of a machine without its own (PUT /machines/{vm}/rpo)."""
    header_timeout: float = field(default_factory=lambda: _env_float("SENDENSE_API_HEADER_TIMEOUT", 10.0))
    """Seconds a connection may take to send a request's headers (and may stay idle between requests)."""
    heartbeat_interval: float = field(default_factory=lambda: _env_float("SENDENSE_API_HEARTBEAT_INTERVAL", 10.0))
    """Seconds between this process's heartbeats (its stores' health, read by the pipeline_unhealthy rule)."""
    fast_path: bool = field(default_factory=lambda: _env_bool("SENDENSE_API_FAST_PATH", True))
    """Single telemetry updates answered before Litestar's routing (api/fastpath.py); the same answers."""

    def __post_init__(self) -> None:
        # A heartbeat older than two minutes is ignored (pipeline/alerts/heartbeats.py STALE).
        if not 0 < self.heartbeat_interval <= 60:
            raise ValueError("SENDENSE_API_HEARTBEAT_INTERVAL must be more than 0 and at most 60 seconds")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.agent_tokens or self.viewer_tokens or self.operator_tokens)


@dataclass(frozen=True)
class IngestSettings:
    """The acknowledgement path: group commits of points to InfluxDB and state to MySQL."""

    commit_linger: float = field(default_factory=lambda: _env_float("SENDENSE_COMMIT_LINGER", 0.002))
    """Seconds a group commit waits for more updates to join it before it starts."""
    commit_max_points: int = field(default_factory=lambda: _env_int("SENDENSE_COMMIT_MAX_POINTS", 5000))
    """Most points in one InfluxDB write of a group commit (a bigger batch request is written in parts)."""
    commit_max_inflight: int = field(default_factory=lambda: _env_int("SENDENSE_COMMIT_MAX_INFLIGHT", 2))
    """Group commits under way at once per API process; updates arriving meanwhile join the next one."""
    commit_timeout: float = field(default_factory=lambda: _env_float("SENDENSE_COMMIT_TIMEOUT", 5.0))
    """Seconds an InfluxDB write of a group commit may take before its updates get 503 + Retry-After."""
    max_queued_updates: int = field(default_factory=lambda: _env_int("SENDENSE_COMMIT_MAX_QUEUED", 50_000))
    """Updates waiting for a group commit per process; past this, updates get 503 + Retry-After at once."""
    retry_after: int = field(default_factory=lambda: _env_int("SENDENSE_RETRY_AFTER", 5))
    """Seconds in the Retry-After header of a 503 (a store unavailable, or the process overloaded)."""
    snapshot_interval: float = field(default_factory=lambda: _env_float("SENDENSE_SNAPSHOT_INTERVAL", 30.0))
    """Seconds between rows mirrored per job into `job_telemetry_snapshots` (the job sheet's 30 s)."""
    max_timestamp_age: float = field(default_factory=lambda: _env_float("SENDENSE_MAX_TIMESTAMP_AGE", 7 * 86400.0))
    """Oldest agent timestamp accepted, in seconds before now."""


@dataclass(frozen=True)
class SchedulerSettings:
    """The rollup scheduler process."""

    rollup_interval: float = field(default_factory=lambda: _env_float("SENDENSE_ROLLUP_INTERVAL", 10.0))
    """Seconds between rollup runs."""
    rollup_batch: int = field(default_factory=lambda: _env_int("SENDENSE_ROLLUP_BATCH", 200))
    """Jobs rolled up at most per run."""
    purge_interval: float = field(default_factory=lambda: _env_float("SENDENSE_PURGE_INTERVAL", 60.0))
    """Seconds between retries of unfinished purges and sweeps of leftover series."""
    reaper_interval: float = field(default_factory=lambda: _env_float("SENDENSE_REAPER_INTERVAL", 60.0))
    """Seconds between stale-job checks."""
    stale_after: float = field(default_factory=lambda: _env_float("SENDENSE_STALE_JOB_TIMEOUT", 900.0))
    """A running job the server has received no update from for this many seconds, on the server's own clock
    (never the agent's timestamps), is marked failed ("telemetry timeout")."""
    rollup_max_attempts: int = field(default_factory=lambda: _env_int("SENDENSE_ROLLUP_MAX_ATTEMPTS", 5))
    """Failed rollups of one job (outages not counted) before it is set aside as failed-to-roll-up."""
    rollup_retry_base: float = field(default_factory=lambda: _env_float("SENDENSE_ROLLUP_RETRY_BASE", 30.0))
    """Seconds before the first retry of a failed rollup; doubled at each further failure."""
    rollup_retry_max: float = field(default_factory=lambda: _env_float("SENDENSE_ROLLUP_RETRY_MAX", 3600.0))
    """Longest wait between two rollup attempts of one job."""
    chart_max_points: int = field(default_factory=lambda: _env_int("SENDENSE_CHART_MAX_POINTS", 100))
    """Most points kept in `performance_metrics.chart_data`."""
    reconcile_interval: float = field(default_factory=lambda: _env_float("SENDENSE_RECONCILE_INTERVAL", 3600.0))
    """Seconds between reconciles of the machines whose jobs were changed outside the job store (0: never)."""
    reconcile_full_interval: float = field(
        default_factory=lambda: _env_float("SENDENSE_RECONCILE_FULL_INTERVAL", 86400.0)
    )
    """Seconds between reconciles of every machine, which also find jobs deleted or moved (0: never)."""
    reconcile_batch: int = field(default_factory=lambda: _env_int("SENDENSE_RECONCILE_BATCH", 200))
    """Machines per reconcile transaction: their rows are locked for one batch only."""
    reconcile_overlap: float = field(default_factory=lambda: _env_float("SENDENSE_RECONCILE_OVERLAP", 600.0))
    """Seconds a reconcile looks back past the previous run's start (a change committed late is still seen)."""
    metrics_port: int = field(default_factory=lambda: _env_int("SENDENSE_SCHEDULER_METRICS_PORT", 9108))
    """Port of the scheduler's Prometheus metrics (0: none). A second scheduler on the host runs without."""
    metrics_host: str = field(default_factory=lambda: _env("SENDENSE_SCHEDULER_METRICS_HOST", "127.0.0.1"))
    """Address of the scheduler's metrics."""


@dataclass(frozen=True)
class DashboardSettings:
    """The Bokeh dashboard."""

    port: int = field(default_factory=lambda: _env_int("SENDENSE_DASHBOARD_PORT", 5006))
    """Port of the Bokeh server."""
    api_url: str = field(default_factory=lambda: _env("SENDENSE_DASHBOARD_API_URL", "http://127.0.0.1:8082"))
    """Where the dashboard finds the API."""
    token: str = field(default_factory=lambda: _env("SENDENSE_DASHBOARD_TOKEN", ""))
    """Viewer token the dashboard reads the API with."""
    operator_token: str = field(default_factory=lambda: _env("SENDENSE_DASHBOARD_OPERATOR_TOKEN", ""))
    """Operator token sent only with the acknowledgements and silences of logged-in operators (empty: none)."""
    host: str = field(default_factory=lambda: _env("SENDENSE_DASHBOARD_HOST", "127.0.0.1"))
    """Address the dashboard listens on; anything but loopback requires SENDENSE_DASHBOARD_USERS."""
    origins: tuple[str, ...] = field(default_factory=lambda: _env_list("SENDENSE_DASHBOARD_ORIGINS"))
    """Extra host[:port] values browsers may open the dashboard's websocket from (e.g. behind nginx)."""
    users: tuple[str, ...] = field(default_factory=lambda: _env_list("SENDENSE_DASHBOARD_USERS"))
    """Who may log in: `name:role:hash` (role viewer or operator; `name:hash` is a viewer), from
    `sendense hash-password NAME --role ROLE`."""
    cookie_secret: str = field(default_factory=lambda: _env("SENDENSE_DASHBOARD_COOKIE_SECRET", ""))
    """Key signing the login cookie (empty: a new one at each start, which logs everyone out)."""
    secure_cookies: bool = field(
        default_factory=lambda: _env("SENDENSE_DASHBOARD_SECURE_COOKIES", "").lower() in ("1", "true", "yes")
    )
    """Send the login cookie over HTTPS only (set it when the dashboard is served through TLS)."""


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"environment variable {name}={raw!r} is not true or false")


def _env_json(name: str) -> dict:
    import json

    raw = os.environ.get(name, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"environment variable {name} must be a JSON object")
    return value


@dataclass(frozen=True)
class AlertSettings:
    """Alert rules, their lifecycle, and the channels notifications go to (docs/alerts.md)."""

    evaluate_interval: float = field(default_factory=lambda: _env_float("SENDENSE_ALERT_INTERVAL", 15.0))
    """Seconds between evaluations of every rule (one scheduler evaluates at a time)."""
    deliver_interval: float = field(default_factory=lambda: _env_float("SENDENSE_ALERT_DELIVERY_INTERVAL", 2.0))
    """Seconds between looks at the outbox for notifications due."""
    hold_down: float = field(default_factory=lambda: _env_float("SENDENSE_ALERT_HOLD_DOWN", 300.0))
    """Seconds an alert must stay resolved before its resolve is notified: one that fires again within
    this sends nothing more (no flapping)."""
    rules: dict = field(default_factory=lambda: _env_json("SENDENSE_ALERT_RULES"))
    """Per rule, over the defaults: {"job_stalled": {"enabled": true, "severity": "warning",
    "params": {"minutes": 10}, "channels": ["email"]}, ...} (the API can override these per machine)."""
    dashboard_url: str = field(default_factory=lambda: _env("SENDENSE_ALERT_DASHBOARD_URL", "http://127.0.0.1:5006"))
    """Where a notification's link points (the dashboard, as operators open it)."""
    retry_base: float = field(default_factory=lambda: _env_float("SENDENSE_ALERT_RETRY_BASE", 5.0))
    """Seconds before a failed delivery is tried again; doubled at each failure."""
    retry_max: float = field(default_factory=lambda: _env_float("SENDENSE_ALERT_RETRY_MAX", 300.0))
    """Longest wait between two delivery attempts (a delivery is never given up, except when refused)."""
    webhook_url: str = field(default_factory=lambda: _env("SENDENSE_ALERT_WEBHOOK_URL", ""))
    """Webhook receiver (empty: no webhook channel)."""
    webhook_secret: str = field(default_factory=lambda: _env("SENDENSE_ALERT_WEBHOOK_SECRET", ""))
    """Key of the X-Sendense-Signature header (HMAC-SHA256 of the body)."""
    webhook_timeout: float = field(default_factory=lambda: _env_float("SENDENSE_ALERT_WEBHOOK_TIMEOUT", 5.0))
    """Seconds a webhook delivery may take before it counts as failed (and is retried)."""
    webhook_min_severity: str = field(default_factory=lambda: _env("SENDENSE_ALERT_WEBHOOK_MIN_SEVERITY", "info"))
    """Lowest severity sent to the webhook."""
    smtp_host: str = field(default_factory=lambda: _env("SENDENSE_SMTP_HOST", ""))
    """SMTP server (empty: no e-mail channel)."""
    smtp_port: int = field(default_factory=lambda: _env_int("SENDENSE_SMTP_PORT", 587))
    """SMTP port (587: submission with STARTTLS)."""
    smtp_starttls: bool = field(default_factory=lambda: _env_bool("SENDENSE_SMTP_STARTTLS", True))
    """Upgrade the connection with STARTTLS before logging in (refuse to send if the server cannot)."""
    smtp_user: str = field(default_factory=lambda: _env("SENDENSE_SMTP_USER", ""))
    """SMTP login (empty: no login)."""
    smtp_password: str = field(default_factory=lambda: _env("SENDENSE_SMTP_PASSWORD", ""))
    """SMTP password."""
    smtp_from: str = field(default_factory=lambda: _env("SENDENSE_SMTP_FROM", "sendense@localhost"))
    """From address of notifications and reports."""
    smtp_timeout: float = field(default_factory=lambda: _env_float("SENDENSE_SMTP_TIMEOUT", 10.0))
    """Seconds an SMTP conversation may take."""
    smtp_ca_file: str = field(default_factory=lambda: _env("SENDENSE_SMTP_CA_FILE", ""))
    """CA bundle (PEM) that verifies the SMTP server's certificate after STARTTLS (empty: the system's CAs)."""
    email_to: tuple[str, ...] = field(default_factory=lambda: _env_list("SENDENSE_ALERT_EMAIL_TO"))
    """Recipients of alert e-mails (comma-separated)."""
    email_min_severity: str = field(default_factory=lambda: _env("SENDENSE_ALERT_EMAIL_MIN_SEVERITY", "warning"))
    """Lowest severity sent by e-mail."""
    email_digest_minutes: float = field(default_factory=lambda: _env_float("SENDENSE_ALERT_EMAIL_DIGEST", 0.0))
    """0: one e-mail per notification; N: one digest of what came in the last N minutes."""
    alertmanager_url: str = field(default_factory=lambda: _env("SENDENSE_ALERTMANAGER_URL", ""))
    """Prometheus Alertmanager (its v2 API; empty: no Alertmanager channel)."""
    alertmanager_min_severity: str = field(default_factory=lambda: _env("SENDENSE_ALERTMANAGER_MIN_SEVERITY", "info"))
    """Lowest severity posted to Alertmanager."""
    alertmanager_resend: float = field(default_factory=lambda: _env_float("SENDENSE_ALERTMANAGER_RESEND", 60.0))
    """Seconds between re-posts of the firing alerts (each valid for 4 of these)."""
    alertmanager_timeout: float = field(default_factory=lambda: _env_float("SENDENSE_ALERTMANAGER_TIMEOUT", 5.0))
    """Seconds one post to Alertmanager may take before it counts as failed (and is retried)."""

    def __post_init__(self) -> None:
        from pipeline.alerts.vocabulary import SEVERITIES

        for name in ("webhook_min_severity", "email_min_severity", "alertmanager_min_severity"):
            if getattr(self, name) not in SEVERITIES:
                raise ValueError(f"alert setting {name}={getattr(self, name)!r} is not one of {', '.join(SEVERITIES)}")
        if self.alertmanager_resend <= 0:
            raise ValueError("SENDENSE_ALERTMANAGER_RESEND must be above 0: posted alerts are valid for 4 of these")

    def channels(self) -> dict[str, str]:
        """The configured channels and the lowest severity each one is sent."""
        configured = {
            "webhook": (bool(self.webhook_url), self.webhook_min_severity),
            "email": (bool(self.smtp_host and self.email_to), self.email_min_severity),
            "alertmanager": (bool(self.alertmanager_url), self.alertmanager_min_severity),
        }
        return {name: minimum for name, (on, minimum) in configured.items() if on}


@dataclass(frozen=True)
class ReportSettings:
    """Reports and estate views."""

    time_zone: str = field(default_factory=lambda: _env("SENDENSE_DISPLAY_TIMEZONE", "UTC"))
    """IANA time zone of the days and hours reports show (the stores keep UTC)."""
    hours_interval: float = field(default_factory=lambda: _env_float("SENDENSE_ESTATE_HOURS_INTERVAL", 60.0))
    """Seconds between refreshes of the estate's per-hour summary (reports stay exact meanwhile; 0: never)."""
    daily_time: str = field(default_factory=lambda: _env("SENDENSE_DAILY_REPORT_TIME", "07:00"))
    """Time of day (HH:MM, display time zone) from which the previous day's report e-mail is due; a scheduler
    down then sends it when it starts later that day."""
    daily_recipients: tuple[str, ...] = field(default_factory=lambda: _env_list("SENDENSE_DAILY_REPORT_RECIPIENTS"))
    """Comma-separated recipients of the daily report (empty: no daily report). Sent through SENDENSE_SMTP_*."""
    daily_interval: float = field(default_factory=lambda: _env_float("SENDENSE_DAILY_REPORT_INTERVAL", 60.0))
    """Seconds between a scheduler's looks at whether the daily report is due and unsent."""
    daily_claim: float = field(default_factory=lambda: _env_float("SENDENSE_DAILY_REPORT_CLAIM", 600.0))
    """Seconds a scheduler's claim on a day's report lasts: one killed while sending is taken over after this
    (far above a render and a send, so a live sender is never taken over)."""

    def __post_init__(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from pipeline.reports.periods import parse_time_of_day

        try:
            parse_time_of_day(self.daily_time)
        except ValueError as exc:
            raise ValueError(f"environment variable SENDENSE_DAILY_REPORT_TIME: {exc}") from None
        if self.daily_interval <= 0 or self.daily_claim < 30:
            raise ValueError(
                "SENDENSE_DAILY_REPORT_INTERVAL must be above 0 and SENDENSE_DAILY_REPORT_CLAIM at least 30 seconds"
            )

        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"environment variable SENDENSE_DISPLAY_TIMEZONE={self.time_zone!r} is not a time zone "
                "(an IANA name such as Europe/Berlin)"
            ) from None

    @property
    def zone(self):
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.time_zone)


@dataclass(frozen=True)
class RuntimeSettings:
    """Where the processes keep their files, and how much they say."""

    state_dir: str = field(default_factory=lambda: _env("SENDENSE_STATE_DIR", ".state"))
    """Directory of logs, metric files and the infra scripts' servers (relative: to the project)."""
    log_level: str = field(default_factory=lambda: _env("SENDENSE_LOG_LEVEL", "INFO"))
    """Python logging level of every `sendense` command (DEBUG, INFO, WARNING, ERROR)."""

    def __post_init__(self) -> None:
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"environment variable SENDENSE_LOG_LEVEL={self.log_level!r} is not a logging level")


@dataclass(frozen=True)
class Settings:
    """All settings, read once from the environment."""

    influx: InfluxSettings = field(default_factory=InfluxSettings)
    mysql: MySQLSettings = field(default_factory=MySQLSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    reports: ReportSettings = field(default_factory=ReportSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)


def load_settings() -> Settings:
    """Read every setting from the environment (raises ValueError naming a malformed variable)."""
    return Settings()
