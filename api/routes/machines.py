"""`/machines`: the protection-flows table (paged, sorted, RPO), one machine's details, its RPO."""

from __future__ import annotations

from typing import Annotated, Literal

from anyio import to_thread
from litestar import Controller, get, put
from litestar.exceptions import NotFoundException
from litestar.openapi.spec import Example
from litestar.params import Body, Parameter
from sqlalchemy import Engine

from api.openapi import StrictBody, errors
from api.schemas import MachineDetails, MachineList, RpoBody, RpoUpdated, to_body
from pipeline.jobs.store import JobStore
from pipeline.read.machines import MachineQuery, MachineSort, get_machine, list_machines
from pipeline.settings import Settings

__all__ = ["MachineController"]

VmName = Annotated[str, Parameter(min_length=1, max_length=255)]


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
        failed)), sizes and `rpo` (objective, age of the last successful backup, `out_of_rpo`). Sorted by
        `sort` (default `rpo`: most overdue first), filtered by `search` (a substring of the VM name or
        repository) and `out_of_rpo`; `total` counts every match."""
        query = MachineQuery(limit, offset, sort, order == "desc", search or None, out_of_rpo)
        page = await to_thread.run_sync(list_machines, engine, query, settings.api.rpo_default)
        return to_body(page, MachineList)

    @get("/{vm_name:str}", operation_id="getMachine", responses=errors(400, 401, 404, 503))
    async def one(self, engine: Engine, settings: Settings, vm_name: VmName) -> MachineDetails:
        """VM details, KPIs and analytics: totals, success rate, average size and duration, trend per job,
        anomalies of its runs, and its RPO status."""
        machine = await to_thread.run_sync(get_machine, engine, vm_name, settings.api.rpo_default)
        if machine is None:
            raise NotFoundException(f"no jobs for a machine named {vm_name!r}")
        return to_body(machine, MachineDetails)

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
        agent token."""
        if not await to_thread.run_sync(store.set_rpo, vm_name, data.rpo_seconds):
            raise NotFoundException(f"no machine named {vm_name!r}")
        machine = await to_thread.run_sync(get_machine, engine, vm_name, settings.api.rpo_default)
        return to_body({"vm_name": vm_name, "rpo": machine["rpo"] if machine else None}, RpoUpdated)
