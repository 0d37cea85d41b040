"""Simulated backup agents: create jobs (or pick up pending ones) and stream realistic telemetry."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import zlib
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pipeline.agent.client import RETRYABLE_STATUSES, ApiError, TelemetryClient
from pipeline.agent.curves import BOTTLENECK_BY_REPOSITORY, MIB, Tick, plan_job, stage_loads

__all__ = ["DEFAULT_VM_NAMES", "SimulatorConfig", "SimulatorReport", "run_simulator"]

# Hypervisors allow spaces, quotes, commas and any script in VM names; the pipeline must too.
DEFAULT_VM_NAMES = (
    "web-01", "web-02", "db-primary", "db-replica", "app-srv-03", "k8s-worker-7", "mail-gw",
    "SQL Server (prod)", "файл-сервер 01", "o'brien-dc", "exchange, legacy", 'build "fast" runner',
    "Müller Buchhaltung", "東京-backup-gw",
)  # fmt: skip
REPOSITORIES = ("repo-primary", "repo-offsite", "s3-archive")
OS_TYPES = ("windows-server-2022", "windows-server-2019", "ubuntu-22.04", "rhel-9", "debian-12")
FLOWS = ("daily-backup", "hourly-replication", "weekly-full")
T = TypeVar("T")
CANCEL_TIMEOUT = 5.0
"""Seconds a stopping simulator spends telling the API about one abandoned job."""


@dataclass
class SimulatorConfig:
    """How many simulated agents run, how fast they report and how their jobs behave."""

    api_url: str = "http://127.0.0.1:8082"
    token: str | None = None
    jobs: int = 0
    """Jobs to run in total, pending ones picked up included (0: run until stopped)."""
    concurrency: int = 4
    update_interval: float = 1.0
    min_duration: float = 60.0
    max_duration: float = 180.0
    failure_rate: float = 0.1
    multi_disk_rate: float = 0.3
    seed: int | None = None
    pick_up_pending: bool = True
    pending_poll_interval: float = 3.0
    vm_names: list[str] | None = None
    leave_pending: tuple[str, ...] = ()
    """Backup-id prefixes of pending jobs not to pick up (the demo's scenarios keep one pending on purpose)."""

    def __post_init__(self) -> None:
        if self.jobs < 0 or self.concurrency < 1:
            raise ValueError("jobs must be >= 0 and concurrency >= 1")
        if self.update_interval <= 0 or not 0 < self.min_duration <= self.max_duration:
            raise ValueError("update_interval must be positive and 0 < min_duration <= max_duration")
        if not (0 <= self.failure_rate <= 1 and 0 <= self.multi_disk_rate <= 1):
            raise ValueError("failure_rate and multi_disk_rate must be between 0 and 1")


@dataclass
class SimulatorReport:
    """What a simulator run did."""

    jobs_started: int = 0
    jobs_completed: int = 0
    jobs_failed: int = 0
    jobs_cancelled: int = 0
    updates_sent: int = 0
    """Updates the API acknowledged."""
    updates_sampled: int = 0
    """Updates measured (every tick of every job): sent, still waiting when stopped, or dropped."""
    updates_dropped: int = 0
    """Updates given up because an outbox was full (an outage longer than OUTBOX_LIMIT updates)."""
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    """The first few distinct error messages."""

    def note_error(self, message: str) -> None:
        """Count an error and keep its message if it is new."""
        self.errors += 1
        if len(self.error_samples) < 10 and message not in self.error_samples:
            self.error_samples.append(message)


@dataclass
class _Job:
    backup_id: str
    vm_name: str
    job_type: str
    total_bytes: int
    disks: list[tuple[int, int]]
    duration: float
    fail: bool
    rng: random.Random
    create: dict[str, Any] | None = None  # create_backup() keyword arguments; None for picked-up jobs
    bottleneck: str = "source_read"  # the stage that limits this job (by its repository)


def _machine(vm_name: str) -> dict[str, Any]:
    # Seeded by the name so a VM keeps its hardware across jobs and runs.
    rng = random.Random(zlib.crc32(vm_name.encode()))
    return {
        "cpu_count": rng.choice((2, 4, 8, 16, 32)),
        "memory_mb": rng.choice((4096, 8192, 16384, 32768, 65536)),
        "os_type": rng.choice(OS_TYPES),
        "protection_flow": rng.choice(FLOWS),
    }


def _synthetic_job(rng: random.Random, config: SimulatorConfig, backup_id: str) -> _Job:
    duration = rng.uniform(config.min_duration, config.max_duration)
    # Size the job so a base throughput of 80-400 MiB/s over ~90% of the run moves all of it.
    total = int(rng.uniform(80, 400) * MIB * duration * 0.9 * 0.85)
    count = rng.randint(2, 4) if rng.random() < config.multi_disk_rate else 1
    shares = [rng.uniform(0.3, 1.0) for _ in range(count)]
    sizes = [max(MIB, int(total * share / sum(shares)) // MIB * MIB) for share in shares]
    vm_name = rng.choice(config.vm_names or DEFAULT_VM_NAMES)
    job_type = rng.choices(("backup", "replication", "restore"), weights=(85, 10, 5))[0]
    create = {
        "vm_name": vm_name,
        "backup_type": rng.choices(("full", "incremental", "differential"), weights=(3, 6, 1))[0],
        "repository_id": rng.choice(REPOSITORIES),
        "job_type": job_type,
        "backup_id": backup_id,
        "disks": [{"disk_index": i, "size_bytes": size} for i, size in enumerate(sizes)],
        "machine": _machine(vm_name),
    }
    disks = list(enumerate(sizes)) if count > 1 else []
    fail = rng.random() < config.failure_rate
    job_rng = random.Random(rng.getrandbits(64))
    bottleneck = BOTTLENECK_BY_REPOSITORY.get(create["repository_id"], "source_read")
    return _Job(backup_id, vm_name, job_type, sum(sizes), disks, duration, fail, job_rng, create, bottleneck)


def _pending_job(rng: random.Random, config: SimulatorConfig, raw: Mapping[str, Any]) -> _Job:
    duration = rng.uniform(config.min_duration, config.max_duration)
    sizes = [(int(d.get("disk_index", i)), int(d.get("size_bytes") or 0)) for i, d in enumerate(raw.get("disks") or [])]
    total = int(raw.get("total_bytes") or 0)
    disk_sum = sum(size for _, size in sizes)
    # Per-disk updates only when the disks' sizes are known and agree with the job's total.
    usable = len(sizes) > 1 and all(size > 0 for _, size in sizes) and total in (0, disk_sum)
    if usable:
        total = disk_sum
    elif total <= 0:
        total = int(rng.uniform(80, 400) * MIB * duration * 0.75)
    fail = rng.random() < config.failure_rate
    job_rng = random.Random(rng.getrandbits(64))
    job_type = str(raw.get("job_type") or "backup")
    vm_name = str(raw.get("vm_name", ""))
    bottleneck = BOTTLENECK_BY_REPOSITORY.get(str(raw.get("repository_id", "")), "source_read")
    disks = sizes if usable else []
    return _Job(str(raw["backup_id"]), vm_name, job_type, total, disks, duration, fail, job_rng, None, bottleneck)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stamp(started_at: datetime, offset: float) -> str:
    return (started_at + timedelta(seconds=offset)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _sleep_unless_stopped(delay: float, stop: asyncio.Event) -> bool:
    """Sleep; True if `stop` was set meanwhile."""
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
    return stop.is_set()


async def _unless_stopped(coro: Coroutine[Any, Any, T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """Run `coro` unless `stop` comes first (then cancel it): (finished, result)."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        return False, None
    return True, task.result()


class _JobGone(Exception):
    """The API no longer accepts updates for this job (404 unknown, 409 already finished)."""


OUTBOX_LIMIT = 10_000
"""Updates one simulated agent keeps while the API cannot take them (a batch's most); beyond, the oldest go."""


@dataclass
class _Outbox:
    """Updates sampled but not acknowledged yet, oldest first (batch entries: each names its job).

    A real agent keeps what it measured until it hears a 2xx: an outage of the API or of a store then
    delays the points but loses none, and they land at the times they were measured."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0

    def add(self, entries: list[dict[str, Any]]) -> None:
        self.entries.extend(entries)
        over = len(self.entries) - OUTBOX_LIMIT
        if over > 0:
            del self.entries[:over]
            self.dropped += over


def _tick_updates(job: _Job, tick: Tick, stamp: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """A tick as batch entries (its per-disk updates first, so the job-level one may end the job) and,
    for a terminal tick, its job-level update apart: it goes alone, so its 200/409 answer is its own."""
    names = {"job_type": job.job_type, "job_id": job.backup_id}
    update = {**tick.as_update(), "timestamp": stamp, "stage_load": stage_loads(job.rng, tick.phase, job.bottleneck)}
    entries = [{**names, **disk, "timestamp": stamp} for disk in tick.disk_updates()]
    if tick.status == "running":
        return [*entries, {**names, **update}], None
    return entries, update


async def _flush(client: TelemetryClient, job: _Job, outbox: _Outbox, report: SimulatorReport) -> int:
    """Send everything the outbox holds as one batch; updates accepted. On ApiError they stay."""
    if not outbox.entries:
        return 0
    pending = list(outbox.entries)
    if len(pending) == 1:  # the usual case: the job sheet's own endpoint, one update
        update = {k: v for k, v in pending[0].items() if k not in ("job_type", "job_id")}
        try:
            await client.send_update(job.job_type, job.backup_id, update)
        except ApiError as exc:
            if exc.status in (404, 409):
                raise _JobGone(str(exc)) from exc
            raise
        outbox.entries.clear()
        return 1
    result = await client.send_batch(pending)
    del outbox.entries[: len(pending)]
    for rejected in result.get("rejected") or []:
        if rejected.get("status") in (404, 409):
            raise _JobGone(f"{job.backup_id}: {rejected.get('detail')}")
        # Refused as invalid: sending it again would be refused again.
        report.note_error(f"batch entry {rejected.get('index')} refused: {rejected.get('detail')}")
    return int(result.get("accepted", 0))


async def _finish(
    client: TelemetryClient, job: _Job, outbox: _Outbox, update: dict[str, Any], report: SimulatorReport,
    say: Callable[[str], None],
) -> int:  # fmt: skip
    """Deliver what the outbox holds, then the terminal update, however long the API is away (the
    caller's stop ends the wait): a job whose end is lost would be timed out as failed."""
    sent, maybe_committed = 0, False
    while True:
        try:
            sent += await _flush(client, job, outbox, report)
            await client.send_update(job.job_type, job.backup_id, update)
            return sent + 1
        except ApiError as exc:
            # After a lost answer a resend meets the state the first attempt already committed.
            if exc.status == 409 and (maybe_committed or exc.attempts > 1):
                return sent + 1
            if exc.status in (404, 409):
                raise _JobGone(str(exc)) from exc
            if exc.status is not None and exc.status not in RETRYABLE_STATUSES:
                raise
            maybe_committed = maybe_committed or exc.status is None
            report.note_error(str(exc))
            say(f"the end of {job.backup_id} is not delivered yet, still trying: {exc}")
            await asyncio.sleep(client.max_backoff)


async def _cancel(client: TelemetryClient, job: _Job, last: Tick | None) -> bool:
    """Tell the API an abandoned job was cancelled, briefly: a stopping simulator must not hang."""
    update = {
        "bytes_transferred": last.bytes_transferred if last else 0,
        "total_bytes": job.total_bytes,
        "transfer_speed_bps": 0,
        "progress_percent": last.progress_percent if last else 0.0,
        "current_phase": last.phase if last else "snapshot",
        "status": "cancelled",
        "error_message": "simulator stopped",
        "timestamp": _now(),
    }
    try:
        await asyncio.wait_for(client.send_update(job.job_type, job.backup_id, update), CANCEL_TIMEOUT)
    except (ApiError, TimeoutError):
        return False
    return True


async def _run_job(
    client: TelemetryClient, job: _Job, config: SimulatorConfig, report: SimulatorReport,
    stop: asyncio.Event, say: Callable[[str], None],
) -> None:  # fmt: skip
    label = f"{job.vm_name!r} ({job.job_type} {job.backup_id})"
    if job.create is not None:
        try:
            created, _ = await _unless_stopped(client.create_backup(**job.create), stop)
        except ApiError as exc:
            report.note_error(str(exc))
            say(f"could not create {label}: {exc}")
            return
        if not created:
            return
    report.jobs_started += 1
    ticks = plan_job(job.rng, job.duration, job.total_bytes, job.fail, interval=config.update_interval, disks=job.disks)
    say(f"started {label}: {job.total_bytes / 2**30:.1f} GiB, {len(job.disks) or 1} disk(s), ~{job.duration:.0f}s")
    loop = asyncio.get_running_loop()
    start, started_at = loop.time(), datetime.now(UTC)
    last: Tick | None = None
    outbox = _Outbox()
    for i, tick in enumerate(ticks):
        # Due times come from the start, so slow requests do not stretch the whole job.
        if await _sleep_unless_stopped(start + tick.offset - loop.time(), stop):
            break
        # Stamped when due, as an agent measuring on its own clock would: late delivery keeps the place.
        entries, final = _tick_updates(job, tick, _stamp(started_at, tick.offset))
        outbox.add(entries)
        report.updates_sampled += len(entries) + (final is not None)
        if final is None and i + 1 < len(ticks) and start + ticks[i + 1].offset <= loop.time():
            continue  # behind (after an outage): the next delivery carries this tick too
        try:
            delivery = _flush(client, job, outbox, report) if final is None else _finish(
                client, job, outbox, final, report, say
            )  # fmt: skip
            finished, sent = await _unless_stopped(delivery, stop)
        except _JobGone as exc:
            report.note_error(f"job gone: {exc}")
            say(f"abandoned {label}: the API no longer accepts its updates ({exc})")
            return
        except ApiError as exc:
            # Kept: the next delivery sends them again, with the updates measured meanwhile.
            report.note_error(str(exc))
            say(f"updates for {label} kept for later ({len(outbox.entries)} waiting): {exc}")
            if final is None:
                continue
            break
        if not finished:
            break
        report.updates_sent += sent or 0
        last = tick
        if tick.status == "completed":
            report.jobs_completed += 1
            say(f"completed {label}")
            break
        if tick.status == "failed":
            report.jobs_failed += 1
            say(f"failed {label}: {tick.error_message}")
            break
    report.updates_dropped += outbox.dropped
    if last is not None and last.status != "running":
        return
    if stop.is_set():
        report.jobs_cancelled += 1
        told = await _cancel(client, job, last)
        say(f"cancelled {label}" + ("" if told else " (the API was not told)"))
    else:
        # Refused as invalid (only a bug makes that): the API's reaper will time the job out.
        say(f"gave up on {label}: its final update was refused")


async def _poll_pending(
    client: TelemetryClient, config: SimulatorConfig, seen: set[str], queue: asyncio.Queue[dict[str, Any]],
    report: SimulatorReport, stop: asyncio.Event, say: Callable[[str], None],
) -> None:  # fmt: skip
    """Queue pending jobs created by someone else, each once."""
    while not stop.is_set():
        try:
            found = await client.list_backups(status="pending", limit=100)
        except ApiError as exc:
            report.note_error(f"polling pending jobs: {exc}")
        else:
            for raw in reversed(found):  # oldest first: the API lists newest first
                backup_id = raw.get("backup_id")
                if backup_id and backup_id not in seen and not backup_id.startswith(config.leave_pending):
                    seen.add(backup_id)
                    queue.put_nowait(raw)
                    say(f"picked up pending job {backup_id} ({raw.get('vm_name')!r})")
        if await _sleep_unless_stopped(config.pending_poll_interval, stop):
            return


async def run_simulator(
    config: SimulatorConfig,
    *,
    stop: asyncio.Event | None = None,
    progress: Callable[[str], None] | None = None,
) -> SimulatorReport:
    """Run simulated jobs, at most `config.concurrency` at once, until `config.jobs` ran or `stop` is set.

    On stop, jobs in flight send a final "cancelled" update; no new job starts.
    """
    stop = stop or asyncio.Event()
    say = progress or (lambda _message: None)
    report = SimulatorReport()
    rng = random.Random(config.seed)
    run_tag = secrets.token_hex(3)  # not from the seeded rng: a rerun with the same seed needs fresh ids
    seen: set[str] = set()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    slots = asyncio.Semaphore(config.concurrency)
    tasks: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        slots.release()
        if not task.cancelled() and task.exception() is not None:
            report.note_error(f"simulated job crashed: {task.exception()!r}")

    async with TelemetryClient(config.api_url, config.token) as client:
        poller = None
        if config.pick_up_pending:
            poller = asyncio.create_task(_poll_pending(client, config, seen, queue, report, stop, say))
        try:
            count = 0
            while not stop.is_set() and (config.jobs == 0 or count < config.jobs):
                acquired, _ = await _unless_stopped(slots.acquire(), stop)
                if not acquired:
                    break
                count += 1
                if not queue.empty():
                    job = _pending_job(rng, config, queue.get_nowait())
                else:
                    backup_id = f"sim-{run_tag}-{count:06d}"
                    seen.add(backup_id)  # our own job is pending until its first update: never pick it up
                    job = _synthetic_job(rng, config, backup_id)
                task = asyncio.create_task(_run_job(client, job, config, report, stop, say))
                tasks.add(task)
                task.add_done_callback(finished)
            if tasks:
                await asyncio.wait(set(tasks))
        finally:
            if poller is not None:
                poller.cancel()
                await asyncio.wait({poller})
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(set(tasks))
    return report
