"""`/machines`: the protection-flows table (paged, sorted, RPO), one machine's details, its RPO."""

from __future__ import annotations

from typing import Annotated

import msgspec
from anyio import to_thread
from litestar import Controller, Request, get, put
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import Parameter

from api.errors import decode_strict
from pipeline.machines import MachineQuery, MachineSort, get_machine, list_machines

__all__ = ["MachineController"]

VmName = Annotated[str, Parameter(min_length=1, max_length=255)]


class RpoBody(msgspec.Struct, forbid_unknown_fields=True):
    """A machine's own recovery-point objective in seconds (1 minute to 1 year), or null for the default."""

    rpo_seconds: Annotated[int, msgspec.Meta(ge=60, le=366 * 86_400)] | None


_rpo_decoder = msgspec.json.Decoder(RpoBody)


class MachineController(Controller):
    path = "/machines"
    tags = ["machines"]

    @get()
    async def list(
        self,
        state: State,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0,
        sort: MachineSort = "rpo",
        order: Annotated[str, Parameter(pattern=r"^(asc|desc)$")] = "desc",
        search: Annotated[str | None, Parameter(max_length=255)] = None,
        out_of_rpo: bool | None = None,
    ) -> dict:
        """A page of the flows table, one row per VM: latest job, success rate (completed ÷ (completed +
        failed)), sizes and `rpo` (objective, age of the last successful backup, `out_of_rpo`). Sorted by
        `sort` (default `rpo`: most overdue first), filtered by `search` (a substring of the VM name or
        repository) and `out_of_rpo`; `total` counts every match."""
        query = MachineQuery(limit, offset, sort, order == "desc", search or None, out_of_rpo)
        return await to_thread.run_sync(list_machines, state.engine, query, state.settings.api.rpo_default)

    @get("/{vm_name:str}")
    async def one(self, state: State, vm_name: VmName) -> dict:
        """VM details, KPIs and analytics: totals, success rate, average size and duration, trend per job,
        anomalies of its runs, and its RPO status."""
        machine = await to_thread.run_sync(get_machine, state.engine, vm_name, state.settings.api.rpo_default)
        if machine is None:
            raise NotFoundException(f"no jobs for a machine named {vm_name!r}")
        return machine

    @put("/{vm_name:str}/rpo")
    async def set_rpo(self, state: State, request: Request, vm_name: VmName) -> dict:
        """Set this machine's own recovery-point objective (`{"rpo_seconds": 43200}`), or go back to the
        default (`{"rpo_seconds": null}`). Needs an agent token."""
        body = decode_strict(await request.body(), _rpo_decoder)
        if not await to_thread.run_sync(state.store.set_rpo, vm_name, body.rpo_seconds):
            raise NotFoundException(f"no machine named {vm_name!r}")
        machine = await to_thread.run_sync(get_machine, state.engine, vm_name, state.settings.api.rpo_default)
        return {"vm_name": vm_name, "rpo": machine["rpo"] if machine else None}
