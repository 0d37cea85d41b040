"""create_app(settings) -> Litestar: the HTTP API. Stateless for correctness: run as many as you like."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from litestar import Litestar, Response, Router, get
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from sqlalchemy import Engine

from api.auth import BearerAuth
from api.errors import EXCEPTION_HANDLERS
from api.fastpath import TelemetryFastPath
from api.heartbeat import ApiHeartbeat
from api.openapi import openapi_config, use_msgspec_schemas
from api.routes.alert_rules import AlertRuleController
from api.routes.alerts import AlertController
from api.routes.backups import BackupController
from api.routes.health import HealthController
from api.routes.machines import MachineController
from api.routes.reports import ReportController
from api.routes.silences import SilenceController
from api.routes.telemetry import TelemetryController
from pipeline.alerts.heartbeats import HeartbeatStore
from pipeline.alerts.store import AlertStore
from pipeline.db.engine import create_async_pool, create_db_engine
from pipeline.ingest.service import TelemetryIngest
from pipeline.jobs.store import JobStore
from pipeline.metrics import render
from pipeline.read.finished import FinishedSummaries
from pipeline.read.history import TelemetryHistory
from pipeline.settings import Settings, load_settings
from pipeline.tsdb.influx import AsyncInflux, SyncInflux

__all__ = ["Services", "create_app"]

log = logging.getLogger("sendense.api")


@get("/metrics", include_in_schema=False)
async def metrics(settings: Settings) -> Response:
    """Prometheus exposition of this API process (of every worker, with several on one port)."""
    body, content_type = render(all_workers=bool(settings.api.metrics_dir))
    return Response(body, media_type=content_type)


@dataclass
class Services:
    """What the handlers use, created by the app's lifespan and handed over as Litestar dependencies."""

    settings: Settings
    engine: Engine | None = None
    influx: AsyncInflux | None = None
    store: JobStore | None = None
    ingest: TelemetryIngest | None = None
    history: TelemetryHistory | None = None
    alert_store: AlertStore | None = None

    def dependencies(self) -> dict[str, Provide]:
        def provider(name: str) -> Provide:
            return Provide(lambda: getattr(self, name), sync_to_thread=False)

        names = ("settings", "engine", "influx", "store", "ingest", "history", "alert_store")
        return {name: provider(name) for name in names}


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the API. Nothing connects until the app starts (its lifespan opens and closes the stores)."""
    settings = settings or load_settings()
    services = Services(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_db_engine(settings.mysql)
        pool = await create_async_pool(settings.mysql, size=settings.ingest.commit_max_inflight + 2)
        influx = AsyncInflux(settings.influx)
        store = JobStore(engine, pool)
        ingest = TelemetryIngest(settings, store, influx)
        services.engine, services.influx, services.store, services.ingest = engine, influx, store, ingest
        # The rollup's reader is blocking: finished jobs' summaries are computed in worker threads, on a
        # client of their own (the event loop's AsyncInflux serves everything else).
        summary_influx = SyncInflux(settings.influx)
        finished = FinishedSummaries(
            engine,
            summary_influx,
            settings.influx.raw_rp,
            settings.scheduler.chart_max_points,
            retry_after=settings.ingest.retry_after,
        )
        services.history = TelemetryHistory(engine, influx, settings.influx.raw_rp, finished=finished)
        services.alert_store = AlertStore(engine)
        if not settings.api.auth_enabled:
            log.warning(
                "no SENDENSE_AGENT_TOKENS, SENDENSE_VIEWER_TOKENS or SENDENSE_OPERATOR_TOKENS configured: "
                "serving without authentication, on loopback only"
            )
        await ingest.start()
        heartbeat = ApiHeartbeat(HeartbeatStore(engine), ingest.committer.stats, settings.api.heartbeat_interval)
        heartbeat.start()
        # Objects alive at start-up (modules, routes, pools) are never garbage: keep the collector
        # from walking them again and again, a source of latency spikes on the request path.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await heartbeat.stop()
            await ingest.stop()
            await influx.aclose()
            summary_influx.close()
            pool.close()
            await pool.wait_closed()
            engine.dispose()

    v1 = Router(
        path="/api/v1",
        route_handlers=[
            BackupController,
            TelemetryController,
            MachineController,
            ReportController,
            AlertController,
            SilenceController,
            AlertRuleController,
            HealthController,
        ],
        middleware=[DefineMiddleware(BearerAuth, settings=settings.api)],
    )
    app = Litestar(
        route_handlers=[v1, metrics],
        dependencies=services.dependencies(),
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        # Routes that take more say so (the batch endpoint); everything else is far below this.
        request_max_body_size=1024 * 1024,
        openapi_config=openapi_config(),
    )
    use_msgspec_schemas(app)
    if settings.api.fast_path:
        # In front of the exception handler and router, behind Litestar's lifespan (which fills `services`).
        app.asgi_handler = TelemetryFastPath(app.asgi_handler, BearerAuth(app.asgi_handler, settings.api), services)
    return app
