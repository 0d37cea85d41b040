"""`/silences`: silence a machine and/or a rule for a while, list silences, end one early (its record is kept)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from anyio import to_thread
from litestar import Controller, delete, get, post
from litestar.exceptions import NotFoundException
from litestar.openapi.spec import Example
from litestar.params import Body, Parameter
from sqlalchemy import Engine

from api.alert_schemas import ACTOR_PATTERN, Silence, SilenceBody, SilenceList
from api.errors import bad_request
from api.openapi import StrictBody, errors
from api.schemas import to_body
from pipeline.alerts.store import AlertStore, SilenceRefused
from pipeline.ingest.models import MAX_BIGINT
from pipeline.read.alerts import get_silence, list_silences

__all__ = ["SilenceController"]

SilenceId = Annotated[int, Parameter(ge=1, le=MAX_BIGINT, description="The silence's id")]
_EXAMPLES = [
    Example(
        summary="a machine, for two hours",
        value={"vm_name": "pgtest1", "duration_seconds": 7200, "reason": "disk replacement", "created_by": "jane"},
    ),
    Example(
        summary="one rule everywhere, until a time",
        value={"rule": "job_overrunning", "ends_at": "2026-12-24T06:00:00Z", "reason": "holiday", "created_by": "jane"},
    ),
]


def _naive_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


class SilenceController(Controller):
    path = "/silences"
    tags = ["alerts"]

    @post(
        operation_id="createSilence",
        status_code=201,
        dto=StrictBody[SilenceBody],
        return_dto=None,
        responses=errors(400, 401, 403, 413, 503),
    )
    async def create(
        self,
        engine: Engine,
        alert_store: AlertStore,
        data: Annotated[SilenceBody, Body(examples=_EXAMPLES)],
    ) -> Silence:
        """Silence the alerts of a machine, of a rule, or of a rule on one machine: they still fire, resolve
        and show (`silenced: true`) but notify nothing until the silence ends; what is still due then is
        notified. From `starts_at` (default now) until `ends_at` or for `duration_seconds`, 60 s to 366 days.
        Needs an operator token."""
        try:
            silence_id = await to_thread.run_sync(
                lambda: alert_store.create_silence(
                    vm_name=data.vm_name,
                    rule=data.rule,
                    reason=data.reason,
                    created_by=data.created_by,
                    starts_at=_naive_utc(data.starts_at),
                    ends_at=_naive_utc(data.ends_at),
                    duration=None if data.duration_seconds is None else timedelta(seconds=data.duration_seconds),
                )
            )
        except SilenceRefused as exc:
            raise bad_request(str(exc)) from exc
        silence = await to_thread.run_sync(get_silence, engine, silence_id)
        return to_body(silence, Silence)

    @get(operation_id="listSilences", responses=errors(400, 401, 503))
    async def list(
        self,
        engine: Engine,
        active: bool | None = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0,
    ) -> SilenceList:
        """Silences, newest first: `active=true` those in force now, `active=false` the others (ended early,
        expired, not begun yet), neither: all. Ended and expired silences are kept (who, when, why)."""
        page = await to_thread.run_sync(lambda: list_silences(engine, active, limit, offset))
        return to_body(page, SilenceList)

    @delete(
        "/{silence_id:int}",
        operation_id="endSilence",
        status_code=200,
        responses=errors(400, 401, 403, 404, 503),
    )
    async def end(
        self,
        engine: Engine,
        alert_store: AlertStore,
        silence_id: SilenceId,
        by: Annotated[str, Parameter(min_length=1, max_length=255, pattern=ACTOR_PATTERN, description="Who ends it")],
    ) -> Silence:
        """End a silence now: `ended_at` and `ended_by` (`by`) are recorded and the silence is kept. Ending
        one that has ended already (or expired) changes nothing and answers it as it is. Needs an operator
        token."""
        if await to_thread.run_sync(alert_store.end_silence, silence_id, by) is None:
            raise NotFoundException(f"no silence {silence_id}")
        silence = await to_thread.run_sync(get_silence, engine, silence_id)
        return to_body(silence, Silence)
