"""`/alerts`: the alerts (paged, filtered), one alert with its transitions and deliveries, acknowledging one."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from litestar import Controller, get, post
from litestar.exceptions import NotFoundException
from litestar.openapi.spec import Example
from litestar.params import Body, Parameter, QueryParameter
from sqlalchemy import Engine

from api.alert_schemas import AcknowledgeBody, Alert, AlertList, AlertWithHistory
from api.openapi import StrictBody, errors
from api.schemas import to_body
from pipeline.alerts.store import AlertStore
from pipeline.alerts.vocabulary import AlertState, Rule, Severity
from pipeline.ingest.models import MAX_BIGINT
from pipeline.read.alerts import AlertQuery, get_alert, list_alerts
from pipeline.settings import Settings

__all__ = ["AlertController", "AlertId"]

AlertId = Annotated[int, Parameter(ge=1, le=MAX_BIGINT, description="The alert's id")]


class AlertController(Controller):
    path = "/alerts"
    tags = ["alerts"]

    @get(operation_id="listAlerts", responses=errors(400, 401, 503))
    async def list(
        self,
        engine: Engine,
        settings: Settings,
        # `state` is a name Litestar keeps for the app's state: the query parameter is bound by its name here.
        alert_state: Annotated[AlertState | None, QueryParameter(name="state")] = None,
        severity: Severity | None = None,
        rule: Rule | None = None,
        vm_name: Annotated[str | None, Parameter(min_length=1, max_length=255)] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0,
    ) -> AlertList:
        """A page of alerts: firing first, then by severity (critical first), then the newest start. Filters:
        `state`, `severity`, `rule`, `vm_name` (exact); `total` counts every match; `firing` counts the firing
        alerts by severity among those of `rule` and `vm_name`. `silenced`: an active silence withholds the
        alert's notifications now."""
        query = AlertQuery(alert_state, severity, rule, vm_name, limit, offset)
        page = await to_thread.run_sync(list_alerts, engine, query, settings.alerts.dashboard_url)
        return to_body(page, AlertList)

    @get("/{alert_id:int}", operation_id="getAlert", responses=errors(400, 401, 404, 503))
    async def one(self, engine: Engine, settings: Settings, alert_id: AlertId) -> AlertWithHistory:
        """One alert with its transitions (fired, refired, resolved, escalated, deescalated; silenced or not)
        and its deliveries (each notification on each channel: pending, sent or refused), oldest first."""
        alert = await to_thread.run_sync(get_alert, engine, alert_id, settings.alerts.dashboard_url)
        if alert is None:
            raise NotFoundException(f"no alert {alert_id}")
        return to_body(alert, AlertWithHistory)

    @post(
        "/{alert_id:int}/acknowledge",
        operation_id="acknowledgeAlert",
        status_code=200,
        dto=StrictBody[AcknowledgeBody],
        return_dto=None,
        responses=errors(400, 401, 403, 404, 413, 503),
    )
    async def acknowledge(
        self,
        engine: Engine,
        settings: Settings,
        alert_store: AlertStore,
        alert_id: AlertId,
        data: Annotated[
            AcknowledgeBody,
            Body(examples=[Example(summary="on it", value={"by": "jane", "comment": "restarting the agent"})]),
        ],
    ) -> Alert:
        """Acknowledge the alert (who, and why), replacing an earlier acknowledgement; it lasts until the
        alert fires anew after a resolve was notified. Needs an operator token."""
        if not await to_thread.run_sync(alert_store.acknowledge, alert_id, data.by, data.comment):
            raise NotFoundException(f"no alert {alert_id}")
        alert = await to_thread.run_sync(get_alert, engine, alert_id, settings.alerts.dashboard_url)
        if alert is None:  # deleted meanwhile (alerts are not deleted today)
            raise NotFoundException(f"no alert {alert_id}")
        return to_body(alert, Alert)
