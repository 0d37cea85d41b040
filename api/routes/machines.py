"""`/machines`: the protection-flows table (paged, sorted, RPO), one machine's details, registering a
machine to protect, its RPO."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from anyio import to_thread
from litestar import Controller, Response, get, put
from litestar.exceptions import NotFoundException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, Parameter
from msgspec import UNSET
from sqlalchemy import Engine

from api.documents import Format, document_response, document_responses
from api.openapi import StrictBody, errors
from api.routes.reports import From, PeriodParam, To, report_period
from api.schemas import MachineDetails, MachineList, RegisteredMachine, RegisterMachine, RpoBody, RpoUpdated, to_body
from pipeline.clock import utc_now
from pipeline.ingest.models import NAME_PATTERN
from pipeline.jobs.store import JobStore
from pipeline.read.machines import MachineQuery, MachineSort, get_machine, list_machines, registered_machine
from pipeline.reports.inputs import read_machine_document
from pipeline.reports.render import machine_html
from pipeline.settings import Settings

__all__ = ["MachineController"]

VmName = Annotated[str, Parameter(min_length=1, max_length=255)]
# A machine's row is made from this one: the names jobs may have (no control characters, '/' or '\').
NewVmName = Annotated[
    str, Parameter(min_length=1, max_length=255, pattern=NAME_PATTERN, description="The machine's name")
]
_REGISTER_EXAMPLE = {
    "repository_id": "repo-1",
    "cpu_count": 4,
    "memory_mb": 16384,
    "os_type": "linux",
    "protection_flow": "nightly",
    "rpo_seconds": 86400,
}


class MachineController(Controller):
    path = "/machines"
    tags = ["machines"]

    @get(operation_id="listMachines", responses=errors(400, 401, 503))
    async def list(
        self,
        engine: Engine,
        settings: Settings,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0,
        sort: MachineSort = "rpo",
        order: Literal["asc", "desc"] = "desc",
        search: Annotated[str | None, Parameter(max_length=255)] = None,
        out_of_rpo: bool | None = None,
    ) -> MachineList:
        """A page of the flows table, one row per VM: latest job, success rate (completed ÷ (completed +
        failed)), sizes, `rpo` (objective, age of the last successful backup, `out_of_rpo`) and `risk` (how
        likely its next backup fails or overruns, with the reasons). Sorted by `sort` (default `rpo`: most
        overdue first; `risk`: riskiest first), filtered by `search` (a substring of the VM name or
        repository) and `out_of_rpo`; `total` counts every match."""
        query = MachineQuery(limit, offset, sort, order == "desc", search or None, out_of_rpo)
        page = await to_thread.run_sync(list_machines, engine, query, settings.api.rpo_default)
        return to_body(page, MachineList)

    @get("/{vm_name:str}", operation_id="getMachine", responses=errors(400, 401, 404, 503))
    async def one(self, engine: Engine, settings: Settings, vm_name: VmName) -> MachineDetails:
        """VM details, KPIs and analytics: totals, success rate, average size and duration, trend per job,
        anomalies of its runs, its RPO status and its failure risk (score, level, reasons)."""
        machine = await to_thread.run_sync(get_machine, engine, vm_name, settings.api.rpo_default)
        if machine is None:
            raise NotFoundException(f"no jobs for a machine named {vm_name!r}")
        return to_body(machine, MachineDetails)

    @get(
        "/{vm_name:str}/report.pdf",
        operation_id="machineReportPdf",
        responses={**document_responses("pdf"), **errors(400, 401, 404, 503)},
    )
    async def report_pdf(
        self,
        engine: Engine,
        settings: Settings,
        vm_name: VmName,
        period: PeriodParam = None,
        start: From = None,
        end: To = None,
    ) -> Response:
        """One machine's report to hand over, as a PDF: the period's figures, its RPO state and failure risk
        now (with the reasons), week-over-week, charts of each job's duration, size and speed, its failures
        with their reasons, and its newest 50 jobs of the period (how many older ones, said)."""
        return await _machine_document(engine, settings, vm_name, "pdf", period, start, end)

    @get(
        "/{vm_name:str}/report.html",
        operation_id="machineReportHtml",
        responses={**document_responses("html"), **errors(400, 401, 404, 503)},
    )
    async def report_html(
        self,
        engine: Engine,
        settings: Settings,
        vm_name: VmName,
        period: PeriodParam = None,
        start: From = None,
        end: To = None,
    ) -> Response:
        """One machine's report as one HTML page (the PDF's source)."""
        return await _machine_document(engine, settings, vm_name, "html", period, start, end)

    @put(
        "/{vm_name:str}",
        operation_id="registerMachine",
        dto=StrictBody[RegisterMachine],
        return_dto=None,
        responses={
            201: ResponseSpec(RegisteredMachine, description="The machine was not known: registered now."),
            **errors(400, 401, 403, 413, 503),
        },
    )
    async def register(
        self,
        store: JobStore,
        engine: Engine,
        settings: Settings,
        vm_name: NewVmName,
        data: Annotated[
            RegisterMachine, Body(examples=[Example(summary="a database server", value=_REGISTER_EXAMPLE)])
        ],
    ) -> Response[RegisteredMachine]:
        """Register a machine to protect (201), or update a known one (200): the details given are set, those
        left out kept; `rpo_seconds` sets its own objective (null: the default). From then on the
        never_backed_up rule watches it: no completed job within its RPO of being registered fires. Its
        job counts are left alone. Needs an operator token."""
        details = msgspec.structs.asdict(data)
        rpo = details.pop("rpo_seconds")
        created = await to_thread.run_sync(
            store.register_machine, vm_name, details, {} if rpo is UNSET else {"rpo_seconds": rpo}
        )
        machine = await to_thread.run_sync(registered_machine, engine, vm_name, settings.api.rpo_default)
        return Response(to_body(machine, RegisteredMachine), status_code=201 if created else 200)

    @put(
        "/{vm_name:str}/rpo",
        operation_id="setMachineRpo",
        dto=StrictBody[RpoBody],
        return_dto=None,
        responses=errors(400, 401, 403, 404, 413, 503),
    )
    async def set_rpo(
        self,
        engine: Engine,
        store: JobStore,
        settings: Settings,
        vm_name: VmName,
        data: Annotated[
            RpoBody,
            Body(
                examples=[
                    Example(summary="twelve hours", value={"rpo_seconds": 43200}),
                    Example(summary="back to the default", value={"rpo_seconds": None}),
                ]
            ),
        ],
    ) -> RpoUpdated:
        """Set this machine's own recovery-point objective, or go back to the default (`null`). Needs an
        operator token (agent tokens could until the alerts' operator role came; they get 403 now)."""
        if not await to_thread.run_sync(store.set_rpo, vm_name, data.rpo_seconds):
            raise NotFoundException(f"no machine named {vm_name!r}")
        machine = await to_thread.run_sync(registered_machine, engine, vm_name, settings.api.rpo_default)
        return to_body({"vm_name": vm_name, "rpo": machine["rpo"] if machine else None}, RpoUpdated)


async def _machine_document(engine: Engine, settings: Settings, vm_name: str, kind: Format, period, start, end):
    chosen = report_period(settings, period, start, end)
    zone = settings.reports.zone
    document = await to_thread.run_sync(
        read_machine_document, engine, vm_name, chosen, zone, settings.api.rpo_default, utc_now()
    )
    if document is None:
        raise NotFoundException(f"no jobs for a machine named {vm_name!r}")
    return await document_response(lambda: machine_html(document), kind, "machine", vm_name, zone)
