"""`/machines`: the protection-flows table and one machine's details and analytics."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import Parameter

from pipeline.machines import get_machine, list_machines

__all__ = ["MachineController"]


class MachineController(Controller):
    path = "/machines"
    tags = ["machines"]

    @get(sync_to_thread=True)
    def list(self, state: State) -> dict:
        """One row per VM: latest job, success rate (completed ÷ (completed + failed)), sizes."""
        return list_machines(state.engine)

    @get("/{vm_name:str}", sync_to_thread=True)
    def one(self, state: State, vm_name: Annotated[str, Parameter(min_length=1, max_length=255)]) -> dict:
        """VM details, KPIs and analytics: totals, success rate, average size and duration, trend per job."""
        machine = get_machine(state.engine, vm_name)
        if machine is None:
            raise NotFoundException(f"no jobs for a machine named {vm_name!r}")
        return machine
