"""`/telemetry`: updates from agents (single and batch) and the history of a job."""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.exceptions import NotFoundException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, Parameter

from api.errors import bad_request, decode_strict
from api.openapi import StrictBody, errors
from api.schemas import BatchRejection, BatchResult, DiskHistory, History, UpdateAccepted, UpdateFinished, to_body
from pipeline.ingest.models import JOB_ID_PATTERN, BatchBody, BatchUpdate, LooseBatchBody, TelemetryUpdate
from pipeline.ingest.service import IngestResult, TelemetryIngest
from pipeline.jobs.vocabulary import JOB_TYPES
from pipeline.metrics import count_updates
from pipeline.read.history import TelemetryHistory
from pipeline.read.live_disks import CURSOR_PATTERN, parse_cursor

__all__ = ["MAX_UPDATE_BYTES", "TelemetryController", "update_answer"]

JobIdParam = Annotated[str, Parameter(pattern=JOB_ID_PATTERN, max_length=255, description="The job's id")]
_loose_decoder = msgspec.json.Decoder(LooseBatchBody)
_item_decoder = msgspec.json.Decoder(BatchUpdate)
_job_id = re.compile(JOB_ID_PATTERN)
MAX_BATCH_BYTES = 8 * 1024 * 1024
# One update is at most ~5 KB (a 4,000-character error message); anything far larger is refused unread.
MAX_UPDATE_BYTES = 64 * 1024

# Documented, not converted by Litestar: the handler checks them itself (see `update`).
_JOB_TYPE = {"enum": sorted(JOB_TYPES)}
_JOB_ID = {"pattern": JOB_ID_PATTERN, "max_length": 255}
_UPDATE_EXAMPLE = {
    "bytes_transferred": 5368709120,
    "total_bytes": 107374182400,
    "transfer_speed_bps": 336392246,
    "progress_percent": 5.0,
    "current_phase": "transferring",
    "disk_index": 0,
    "stage_load": {"source_read": 41.0, "processing": 22.5, "network": 35.0, "target_write": 78.0},
}


def update_answer(job_id: str, result: IngestResult) -> tuple[int, UpdateAccepted | UpdateFinished]:
    """A durable single update's status and body (the route and api/fastpath.py answer with them)."""
    if result.status == 200:
        return 200, UpdateFinished(job_id, result.body["status"])
    return 202, UpdateAccepted(job_id, True)


class DecodedBatch(BatchBody):
    """A batch whose invalid items were set aside while decoding, each with its position."""

    rejected: list[BatchRejection] = []
    positions: list[int] | None = None
    """Position in the request of each decoded item (None: all decoded, in order)."""


class BatchBodyDTO(StrictBody[BatchBody]):
    """A batch decoded strictly; when some items are invalid, the others are still taken."""

    def decode_bytes(self, value: bytes) -> Any:
        try:
            return decode_strict(value, self.decoder())
        except ValidationException:
            pass  # the envelope or some items are wrong: decode again item by item
        loose = decode_strict(value, _loose_decoder)  # a wrong envelope (no list, too many items): 400
        items, rejected, positions = [], [], []
        for index, raw in enumerate(loose.updates):
            try:
                items.append(decode_strict(raw, _item_decoder))
                positions.append(index)
            except ValidationException as exc:
                rejected.append(BatchRejection(index, 400, exc.detail))
        return DecodedBatch(items, rejected, positions)


class UpdateBodyDTO(StrictBody[TelemetryUpdate]):
    """An update decoded strictly; a refused one is counted in `sendense_updates_total{outcome="invalid"}`."""

    def decode_bytes(self, value: bytes) -> Any:
        try:
            return super().decode_bytes(value)
        except ValidationException:
            count_updates(400)
            raise


class TelemetryController(Controller):
    path = "/telemetry"
    tags = ["telemetry"]

    @post(
        "/batch",
        operation_id="postTelemetryBatch",
        request_max_body_size=MAX_BATCH_BYTES,
        status_code=202,
        dto=BatchBodyDTO,
        return_dto=None,
        responses=errors(400, 401, 403, 413, 503),
    )
    async def batch(
        self,
        ingest: TelemetryIngest,
        data: Annotated[
            BatchBody,
            Body(
                description="Up to 10,000 updates, each naming its job (at most 8 MiB).",
                examples=[
                    Example(
                        summary="two updates",
                        value={
                            "updates": [
                                {"job_type": "backup", "job_id": "backup-pgtest1-1764450000", **_UPDATE_EXAMPLE},
                                {
                                    "job_type": "backup",
                                    "job_id": "backup-web01-1764450007",
                                    **_UPDATE_EXAMPLE,
                                    "progress_percent": 100.0,
                                    "status": "completed",
                                },
                            ]
                        },
                    )
                ],
            ),
        ],
    ) -> BatchResult:
        """Up to 10,000 updates in one request, made durable in one group commit. Each refused item is
        reported by its index with the status it would have had alone (400 invalid, 404 no such job,
        409 finished); the others are accepted. A store down refuses the whole batch (503)."""
        rejected: list[BatchRejection] = []
        positions: list[int] | None = None
        if isinstance(data, DecodedBatch):
            rejected, positions = list(data.rejected), data.positions
        result = await ingest.submit_batch(data.updates)
        for entry in result["rejected"]:
            index = entry["index"] if positions is None else positions[entry["index"]]
            rejected.append(BatchRejection(index, entry["status"], entry["detail"]))
        rejected.sort(key=lambda r: r.index)
        return BatchResult(result["accepted"], rejected)

    @get("/history/{job_id:str}", operation_id="getTelemetryHistory", responses=errors(400, 401, 404, 503))
    async def history(
        self,
        history: TelemetryHistory,
        job_id: JobIdParam,
        since: Annotated[
            str | None,
            Parameter(
                pattern=r"^[0-9]{1,19}$",
                description="A previous live answer's `cursor`: a live answer then carries only the points after "
                "it (and echoes it in `since`); any other answer is whole, also a live one when the cursor is from "
                "before the API's last whole read of the chart (re-bucketed, or read by another process).",
            ),
        ] = None,
    ) -> History:
        """The job sheet's three modes, told apart by `data_source`: `rolled_up` (the summary),
        `live_snapshots` (a running job: the chart from the raw points) and `none` (no telemetry yet).
        Finished means final: a finished job (completed, failed, cancelled) is answered `rolled_up` from
        its first answer on. Until the scheduler has stored its summary, the summary is computed on the
        spot from the job's points by the rollup's own code (equal to what the scheduler then stores,
        and not stored by this read); with InfluxDB down meanwhile the answer is 503 with Retry-After, not
        a partial view. Only a finished job whose rollup fails (recorded in `GET /backups/{id}`) is
        answered `live_snapshots`. In `performance_metrics`, `avg_speed_bps` is time-weighted (the integral
        of the speed curve over the job's duration, not a mean of unevenly spaced samples) and
        `min_speed_bps` is the lowest non-zero speed.

        A live chart is kept by the API and extended with the points after its last, so viewers of the
        same job within a second share one InfluxDB read; `?since=<cursor>` returns only the new points,
        which a dashboard appends."""
        body = await history.get(job_id, None if since is None else int(since))
        if body is None:
            raise NotFoundException(f"job {job_id!r} does not exist")
        return to_body(body, History)

    @get("/history/{job_id:str}/disks", operation_id="getDiskHistory", responses=errors(400, 401, 404, 503))
    async def disk_history(
        self,
        history: TelemetryHistory,
        job_id: JobIdParam,
        since: Annotated[
            str | None,
            Parameter(
                pattern=CURSOR_PATTERN,
                description="A previous live answer's `cursor` (`disk:ns,...`): each disk of a live answer then "
                "carries only its points after the cursor's for it (all of them for a disk it does not name), and "
                "the answer echoes it in `since`; any other answer is whole, also a live one when the cursor is "
                "from before the API's last whole read of the curves.",
            ),
        ] = None,
    ) -> DiskHistory:
        """Each disk's speed curve of a multi-disk job (`t` in seconds from the job's start): `rolled_up`
        (kept with the summary, at most 60 points a disk), `live_snapshots` (from the raw points, about 200
        buckets a disk when first read, then extended with each disk's new points up to 400: also for a
        finished job until its rollup has stored the curves) or `none`. The API keeps a live job's curves
        and reads only the disks whose rows say they have new points; `?since=<cursor>` returns only
        those points, which a dashboard appends to each disk's curve."""
        # The parameter's pattern has refused any other text (400) before this runs.
        body = await history.disks(job_id, None if since is None else parse_cursor(since))
        if body is None:
            raise NotFoundException(f"job {job_id!r} does not exist")
        return to_body(body, DiskHistory)

    @post(
        "/{job_type:str}/{job_id:str}",
        operation_id="postTelemetryUpdate",
        request_max_body_size=MAX_UPDATE_BYTES,
        status_code=202,
        dto=UpdateBodyDTO,
        return_dto=None,
        responses={
            200: ResponseSpec(UpdateFinished, description="A terminal update is durable: the job is finished."),
            **errors(400, 401, 403, 404, 409, 413, 503),
        },
    )
    async def update(
        self,
        ingest: TelemetryIngest,
        job_type: Annotated[str, Parameter(description="backup, restore or replication", schema_extra=_JOB_TYPE)],
        job_id: Annotated[str, Parameter(description="The job's id", schema_extra=_JOB_ID)],
        data: Annotated[
            TelemetryUpdate,
            Body(
                description="One update of the job, or of one disk of it (`disk_index`).",
                examples=[
                    Example(summary="running", value=_UPDATE_EXAMPLE),
                    Example(
                        summary="finished",
                        value={**_UPDATE_EXAMPLE, "progress_percent": 100.0, "status": "completed"},
                    ),
                ],
            ),
        ],
    ) -> Response[UpdateAccepted]:
        """One update. 202 (running) and 200 (terminal) are answered only once the update's point is in
        InfluxDB and the job's state committed in MySQL. A finished job: 409. A store unavailable: 503 with
        Retry-After, and nothing stored."""
        # The hot path: path parameters checked here with a compiled pattern, cheaper than Litestar's
        # per-request conversion of constrained parameters (the document still shows the rules).
        if job_type not in JOB_TYPES:
            count_updates(400)
            raise bad_request(f"job_type: expected one of {', '.join(sorted(JOB_TYPES))}, got {job_type!r}")
        if not _job_id.match(job_id):
            count_updates(400)
            raise bad_request(f"job_id: expected letters, digits, '.', '_', '-' (1-255 characters), got {job_id!r}")
        status, body = update_answer(job_id, await ingest.submit(job_type, job_id, data))
        return Response(body, status_code=status)  # type: ignore[return-value]
