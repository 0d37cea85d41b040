"""`/backups`: create a job, list jobs, read one job."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from litestar import Controller, get, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.openapi.spec import Example
from litestar.params import Body, Parameter
from sqlalchemy import Engine

from api.errors import bad_request
from api.openapi import StrictBody, errors
from api.schemas import BackupJob, BackupList, to_body
from pipeline.ingest.models import JOB_ID_PATTERN, CreateBackup
from pipeline.jobs.store import JobConflict, JobStore
from pipeline.jobs.vocabulary import JobStatus
from pipeline.read.history import TelemetryHistory
from pipeline.read.jobs import get_job, list_jobs

__all__ = ["BackupController"]

_CREATE_EXAMPLE = {
    "vm_name": "pgtest1",
    "backup_type": "incremental",
    "repository_id": "repo-1",
    "disks": [{"disk_index": 0, "size_bytes": 107374182400}],
}


class BackupController(Controller):
    path = "/backups"
    tags = ["backups"]

    @post(
        operation_id="createBackup",
        status_code=201,
        dto=StrictBody[CreateBackup],
        return_dto=None,
        responses=errors(400, 401, 403, 409, 413, 503),
    )
    async def create(
        self,
        engine: Engine,
        store: JobStore,
        data: Annotated[
            CreateBackup,
            Body(
                description="The job sheet's body works as is; `backup_id` is made up when left out.",
                examples=[Example(summary="an incremental backup of one disk", value=_CREATE_EXAMPLE)],
            ),
        ],
    ) -> BackupJob:
        """Start a job (pending until its agent reports): its id is `backup_id` if given (409 if taken),
        else `{job_type}-{vm}-{unix seconds}`."""
        try:
            job_id = await to_thread.run_sync(store.create, data)
        except JobConflict as exc:
            raise ClientException(str(exc), status_code=409) from exc
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
        job = await to_thread.run_sync(get_job, engine, job_id)
        assert job is not None
        return to_body(job, BackupJob)

    @get(operation_id="listBackups", responses=errors(400, 401, 503))
    async def list(
        self,
        engine: Engine,
        vm_name: Annotated[str | None, Parameter(max_length=255)] = None,
        repository_id: Annotated[str | None, Parameter(max_length=255)] = None,
        status: JobStatus | None = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0,
    ) -> BackupList:
        """Jobs newest first, filtered by VM, repository and status; `total` counts all matches."""
        page = await to_thread.run_sync(
            lambda: list_jobs(
                engine, vm_name=vm_name, repository_id=repository_id, status=status, limit=limit, offset=offset
            )
        )
        return to_body(page, BackupList)

    @get("/{backup_id:str}", operation_id="getBackup", responses=errors(400, 401, 404, 503))
    async def one(
        self,
        engine: Engine,
        history: TelemetryHistory,
        backup_id: Annotated[str, Parameter(pattern=JOB_ID_PATTERN, max_length=255)],
    ) -> BackupJob:
        """One job with its disks and its rollup state; a running job also has `eta_seconds`, `eta_at`
        and, when there is no estimate yet, `eta_reason`."""
        job = await to_thread.run_sync(get_job, engine, backup_id)
        if job is None:
            raise NotFoundException(f"backup {backup_id!r} does not exist")
        if job["status"] == "running":
            job.update(await history.eta(backup_id))
        return to_body(job, BackupJob)
