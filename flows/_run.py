"""What ``sample_run`` and ``full_run`` share: the DAG parse → prompt → extract → aggregate
around the run's job, composed from the domain (``extraction.run``) and Prefect.

The decisions live in the domain: opening the job and finding it again
(:mod:`extraction.run.lifecycle`), sizing and building the engine
(:mod:`extraction.run.assembly`), the chunk scheduler (:mod:`extraction.run.scheduler`) and
the cancellation watcher (:mod:`extraction.run.watch`). This module adds what is Prefect's:

* the flow run is renamed ``sample-<job id 8>`` / ``full-<job id 8>`` and tagged
  ``job:<id>``; the job stores the flow run id, so each finds the other;
* the shared limits live on the Prefect server (``flows/_limits.py``), the extract stage
  runs one ``extract`` task per chunk, and its progress is a Prefect progress artifact
  (the aggregate task publishes the summary table);
* the watcher also asks Prefect whether the flow run was cancelled (a cancel in the UI);
* the run ends in the matching Prefect state: Cancelled, or Failed (with the reason) when
  it cannot proceed — a fatal LLM error (bad credentials, unknown model) or the database
  gone;
* the state hooks: a served or worker run killed by a cancel, or one that crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run as runtime_flow_run
from prefect.states import Cancelled, Failed, State

from config.settings import Settings, get_settings
from extraction.db import session_scope
from extraction.errors import ExtractflowError, FatalRunError
from extraction.llm.limits import combine
from extraction.models import JobKind, JobStatus, LogLevel
from extraction.run import lifecycle, preload
from extraction.run.assembly import RunOptions, build_engine, run_slots
from extraction.run.batch import is_batch_job
from extraction.run.runner import ChunkOutcome
from extraction.run.scheduler import run_extract_stage
from extraction.run.watch import watch_job
from flows._limits import ensure_limits, process_limiter, rate_bucket, slot_lease
from tasks.aggregate import aggregate
from tasks.batch import batch_step, job_dict
from tasks.extract import extract
from tasks.parse import parse
from tasks.prompt import prompt

__all__ = ["flow_run_name_for", "on_flow_cancelled", "on_flow_crashed", "run_job"]

logger = logging.getLogger(__name__)
_CANCEL_STATES = {StateType.CANCELLING, StateType.CANCELLED}


def _run_logger() -> Any:
    """The flow run's logger (its lines reach the Prefect UI), else this module's."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def flow_run_name_for(kind: JobKind, job_id: uuid.UUID | str) -> str:
    prefix = "sample" if JobKind(kind) is JobKind.SAMPLE else "full"
    return f"{prefix}-{str(job_id)[:8]}"


async def _label_flow_run(flow_run_id: str | None, kind: JobKind, job_id: uuid.UUID) -> None:
    """Name the flow run after the job and tag it, so the UI and the CLI find each other."""
    if not flow_run_id:
        return
    try:
        async with get_client() as client:
            run = await client.read_flow_run(uuid.UUID(flow_run_id))
            tags = list(dict.fromkeys([*(run.tags or []), f"job:{job_id}", "extractflow"]))
            await client.update_flow_run(
                uuid.UUID(flow_run_id), name=flow_run_name_for(kind, job_id), tags=tags
            )
    except Exception as exc:  # noqa: BLE001 - cosmetic; the job still records the run id
        logger.warning("could not rename flow run %s: %s", flow_run_id, exc)


async def _flow_run_cancelled(client: Any, flow_run_id: uuid.UUID) -> bool:
    run = await client.read_flow_run(flow_run_id)
    return run.state is not None and run.state.type in _CANCEL_STATES


async def _watch(job_id: uuid.UUID, flow_run_id: str | None, stop: asyncio.Event,
                 why: dict[str, str], settings: Settings) -> None:
    """The domain's watcher, also asking Prefect whether the flow run was cancelled."""
    async with contextlib.AsyncExitStack() as stack:
        asks = None
        if flow_run_id:
            client = await stack.enter_async_context(get_client())
            asks = functools.partial(_flow_run_cancelled, client, uuid.UUID(flow_run_id))
        await watch_job(job_id, stop, why, poll_seconds=settings.cancel_poll_seconds,
                        stale_seconds=settings.job_stale_seconds, flow_run_cancelled=asks,
                        log=logger)


async def _extract_stage(job_id: uuid.UUID, options: RunOptions, settings: Settings,
                         stop: asyncio.Event, *, resumed: bool) -> ChunkOutcome:
    plan, chunks = await asyncio.to_thread(lifecycle.load_chunks, job_id,
                                           options.documents_per_chunk)
    if not chunks:
        return ChunkOutcome()
    sizes = await ensure_limits(settings)
    name = settings.global_concurrency_limit_name
    slots = run_slots(options.llm_concurrency, sizes["concurrency"], limit_name=name)
    limiter = combine(process_limiter(options.llm_concurrency), rate_bucket(settings))

    def waiting(holders: str) -> None:
        lifecycle.log_event(
            job_id, "waiting_for_slots",
            f"waiting for {slots} slots of the global limit '{name}' ({holders})",
            level=LogLevel.WARNING)

    artifact: dict[str, Any] = {}

    async def report_progress() -> None:
        progress = await asyncio.to_thread(lifecycle.job_progress, job_id)
        if "id" in artifact:
            await aupdate_progress_artifact(artifact["id"], progress=progress)
            return
        artifact["id"] = await acreate_progress_artifact(
            progress=progress, key=f"job-{str(job_id)[:8]}-progress",
            description=f"Documents processed by job {job_id}",
        )

    return await run_extract_stage(
        plan, chunks, options=options, slots=slots,
        lease=slot_lease(settings, slots,
                         on_wait=lambda holders: asyncio.to_thread(waiting, holders),
                         job_id=job_id, flow_run_id=runtime_flow_run.id, stop=stop),
        build=functools.partial(build_engine, settings, plan, limiter),
        session_factory=session_scope, stop=stop, resumed=resumed, run_chunk=extract,
        on_progress=report_progress,
    )


async def run_job(
    kind: JobKind,
    params: dict[str, Any],
    *,
    job_id: str | None = None,
    force: bool = False,
    knobs: Mapping[str, int | None] | None = None,
    batch: bool = False,
) -> dict[str, Any] | State:
    """Run a sample or full job end to end; returns the job as a dict, or a final state.

    ``knobs`` are the flow's tuning parameters (:class:`~extraction.run.assembly.RunOptions`;
    None → settings). Returns a ``Cancelled`` state when the job was cancelled and a
    ``Failed`` state (with the reason) when it could not proceed, so the flow run ends in the
    matching Prefect state. ``batch`` (or a job that already runs in batch mode) sends the
    requests through the provider's Batch API (:mod:`extraction.run.batch`): the flow
    submits them and returns the job still PROCESSING, and a collect step finishes it.
    """
    preload.start()  # a deployment's run enters here without a bootstrap (flows/bootstrap.py)
    settings = get_settings()
    flow_run_id = runtime_flow_run.id
    try:
        options = RunOptions.resolve(settings, **(knobs or {}))
        job_uuid, resumed = await asyncio.to_thread(
            functools.partial(lifecycle.start_job, kind, params, job_id=job_id, force=force,
                              flow_run_id=flow_run_id, settings=settings))
    except ExtractflowError as exc:
        if job_id is not None and await asyncio.to_thread(lifecycle.job_status, job_id) is \
                JobStatus.CANCELLED:
            return Cancelled(message=f"job {job_id} was cancelled before it started")
        return Failed(message=str(exc))
    await _label_flow_run(flow_run_id, kind, job_uuid)

    stop = asyncio.Event()
    why: dict[str, str] = {}
    watcher = asyncio.create_task(_watch(job_uuid, flow_run_id, stop, why, settings))
    outcome: str = "complete"
    reason: str | None = None
    waiting = False
    try:
        await parse(job_uuid)
        await prompt(job_uuid)
        if batch or await asyncio.to_thread(is_batch_job, job_uuid):
            waiting = not (await batch_step(job_uuid, mark=batch))["done"]
        else:
            await _extract_stage(job_uuid, options, settings, stop, resumed=resumed)
        if stop.is_set():
            outcome, reason = "cancelled", why.get("reason", "cancelled")
    except FatalRunError as exc:
        outcome, reason = "failed", exc.reason
    except ExtractflowError as exc:
        outcome, reason = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug must not leave the job PROCESSING forever
        _run_logger().exception("job %s stopped by an unexpected error", job_uuid)
        outcome, reason = "failed", f"unexpected error: {type(exc).__name__}: {exc}"
    finally:
        stop.set()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    if waiting and outcome == "complete":  # the provider has the requests; collect later
        return await job_dict(job_uuid)
    try:
        job = await aggregate(job_uuid, outcome, reason)
    except ExtractflowError as exc:  # the database is gone: nothing more can be recorded
        return Failed(message=f"job {job_uuid}: {reason or exc}; could not record it: {exc}")
    if job["status"] == JobStatus.CANCELLED.value:
        return Cancelled(message=f"job {job_uuid} cancelled: {job.get('error') or reason}",
                         data=job)
    if job["status"] == JobStatus.FAILED.value:
        return Failed(message=f"job {job_uuid} failed: {job.get('error')}", data=job)
    return job


# ---------------------------------------------------------------- Prefect state hooks


def on_flow_cancelled(flow: Any, flow_run: Any, state: Any) -> None:
    """A served or worker run killed by a cancel: the job becomes CANCELLED, work kept."""
    lifecycle.cancel_for_flow_run(str(flow_run.id), tags=flow_run.tags or [],
                                  parameters=flow_run.parameters)


def on_flow_crashed(flow: Any, flow_run: Any, state: Any) -> None:
    """A crashed run leaves its job PROCESSING (resumable); say so in the job's log."""
    lifecycle.note_crash(str(flow_run.id), getattr(state, "message", ""),
                         tags=flow_run.tags or [], parameters=flow_run.parameters)
