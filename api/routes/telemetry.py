"""`/telemetry`: updates from agents (single and batch) and the history of a job."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import Parameter

from api.errors import bad_request, decode_strict
from pipeline.ingest.models import JOB_ID_PATTERN, BatchBody, BatchUpdate, LooseBatchBody, TelemetryUpdate
from pipeline.jobs.vocabulary import JOB_TYPES
from pipeline.metrics import UPDATES

__all__ = ["TelemetryController"]

JobIdParam = Annotated[str, Parameter(pattern=JOB_ID_PATTERN, max_length=255)]
_batch_decoder = msgspec.json.Decoder(BatchBody)
_loose_decoder = msgspec.json.Decoder(LooseBatchBody)
_item_decoder = msgspec.json.Decoder(BatchUpdate)
_update_decoder = msgspec.json.Decoder(TelemetryUpdate)
_job_id = re.compile(JOB_ID_PATTERN)
MAX_BATCH_BYTES = 8 * 1024 * 1024
# One update is at most ~5 KB (a 4,000-character error message); anything far larger is refused unread.
MAX_UPDATE_BYTES = 64 * 1024


class TelemetryController(Controller):
    path = "/telemetry"
    tags = ["telemetry"]

    @post("/batch", request_max_body_size=MAX_BATCH_BYTES)
    async def batch(self, state: State, request: Request) -> Response:
        """Up to 10,000 updates in one request; each bad item is reported by index, the rest accepted."""
        raw = await request.body()
        try:
            items = _batch_decoder.decode(raw).updates
            rejected: list[dict] = []
            indexes = list(range(len(items)))
        except msgspec.ValidationError:
            items, rejected, indexes = self._decode_items(raw)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise bad_request(f"body is not valid JSON: {exc}") from exc
        result = await state.ingest.submit_batch(items)
        for entry in result["rejected"]:
            entry["index"] = indexes[entry["index"]]
        rejected.extend(result["rejected"])
        rejected.sort(key=lambda e: e["index"])
        return Response({"accepted": result["accepted"], "rejected": rejected}, status_code=202)

    @staticmethod
    def _decode_items(raw: bytes) -> tuple[list[BatchUpdate], list[dict], list[int]]:
        try:
            loose = _loose_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise bad_request(str(exc)) from exc
        except RecursionError as exc:  # nested deeper than a decoder allows: malformed for our purposes
            raise bad_request(f"body is not valid JSON: {exc}") from exc
        items, rejected, indexes = [], [], []
        for index, item in enumerate(loose.updates):
            try:
                items.append(_item_decoder.decode(item))
                indexes.append(index)
            except (msgspec.ValidationError, RecursionError) as exc:
                rejected.append({"index": index, "status": 400, "detail": str(exc)})
        return items, rejected, indexes

    @get("/history/{job_id:str}")
    async def history(self, state: State, job_id: JobIdParam) -> dict:
        """The job sheet's three modes: `rolled_up`, `live_snapshots` (running, or finished and not yet
        rolled up) and `none`. In `performance_metrics`, `avg_speed_bps` is time-weighted (the integral of
        the speed curve over the job's duration, not a mean of unevenly spaced samples) and
        `min_speed_bps` is the lowest non-zero speed."""
        body = await state.history.get(job_id)
        if body is None:
            raise NotFoundException(f"job {job_id!r} does not exist")
        return body

    @get("/history/{job_id:str}/disks")
    async def disk_history(self, state: State, job_id: JobIdParam) -> dict:
        """Each disk's speed curve of a multi-disk job (`disks`: `[{disk_index, chart_data: [{t, s, p}]}]`,
        `t` in seconds from the job's start): `rolled_up` (kept with the summary, at most 60 points a
        disk), `live_snapshots` (from the raw points, at most about 200 a disk) or `none`."""
        body = await state.history.disks(job_id)
        if body is None:
            raise NotFoundException(f"job {job_id!r} does not exist")
        return body

    @post("/{job_type:str}/{job_id:str}", request_max_body_size=MAX_UPDATE_BYTES)
    async def update(self, request: Request, job_type: str, job_id: str) -> Response:
        """One update (body: TelemetryUpdate: bytes_transferred, total_bytes, transfer_speed_bps, progress_percent
        0-100, current_phase, optional status running|completed|failed|cancelled, disk_index, worker_count,
        error_message, timestamp). 202 (running) and 200 (terminal) are answered only once the update's point
        is in InfluxDB and the job's state committed in MySQL. Finished job: 409. A store unavailable: 503
        with Retry-After."""
        # The hot path: path parameters checked here with a compiled pattern, cheaper than Litestar's
        # per-request conversion of constrained parameters.
        if job_type not in JOB_TYPES:
            raise bad_request(f"job_type: expected one of {', '.join(sorted(JOB_TYPES))}, got {job_type!r}")
        if not _job_id.match(job_id):
            raise bad_request(f"job_id: expected letters, digits, '.', '_', '-' (1-255 characters), got {job_id!r}")
        try:
            data = decode_strict(await request.body(), _update_decoder)
        except ValidationException:
            UPDATES.labels("invalid").inc()
            raise
        result = await request.app.state.ingest.submit(job_type, job_id, data)
        return Response(result.body, status_code=result.status)
