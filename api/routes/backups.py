"""`/backups`: create a job, list jobs, read one job."""

from __future__ import annotations

from typing import Annotated

import msgspec
from anyio import to_thread
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Parameter

from api.errors import bad_request, decode_strict
from pipeline.ingest.models import JOB_ID_PATTERN, CreateBackup
from pipeline.jobs.store import JobConflict
from pipeline.jobs.views import get_job, list_jobs
from pipeline.jobs.vocabulary import JobStatus

__all__ = ["BackupController"]

_create_decoder = msgspec.json.Decoder(CreateBackup)
StatusFilter = JobStatus


class BackupController(Controller):
    path = "/backups"
    tags = ["backups"]

    @post(status_code=201)
    async def create(self, state: State, request: Request) -> dict:
        """Start a job (pending until its agent reports). Body: vm_name, backup_type (full|incremental|
        differential), repository_id, optional job_type, backup_id, disks, machine. The job sheet's example
        body works as is."""
        data = decode_strict(await request.body(), _create_decoder)
        try:
            job_id = await to_thread.run_sync(state.store.create, data)
        except JobConflict as exc:
            raise ClientException(str(exc), status_code=409) from exc
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
        job = await to_thread.run_sync(get_job, state.engine, job_id)
        assert job is not None
        return job

    @get(sync_to_thread=True)
    def list(
        self,
        state: State,
        vm_name: Annotated[str | None, Parameter(max_length=255)] = None,
        repository_id: Annotated[str | None, Parameter(max_length=255)] = None,
        status: StatusFilter | None = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0,
    ) -> dict:
        """Jobs newest first; `total` counts all matches."""
        return list_jobs(
            state.engine, vm_name=vm_name, repository_id=repository_id, status=status, limit=limit, offset=offset
        )

    @get("/{backup_id:str}")
    async def one(self, state: State, backup_id: Annotated[str, Parameter(pattern=JOB_ID_PATTERN)]) -> dict:
        """One job with its disks and its rollup state; a running job also has `eta_seconds`, `eta_at`
        and, when there is no estimate yet, `eta_reason`."""
        job = await to_thread.run_sync(get_job, state.engine, backup_id)
        if job is None:
            raise NotFoundException(f"backup {backup_id!r} does not exist")
        if job["status"] == "running":
            job.update(await state.history.eta(backup_id))
        return job
