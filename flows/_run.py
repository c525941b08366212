"""What ``sample_run`` and ``full_run`` share: the job's lifecycle around the DAG
parse → prompt → extract → aggregate.

* The job row is created here when the flow is started without one (a deployment or a
  schedule), or taken from ``job_id`` (the CLI creates it first so it can show the id at once).
  A PROCESSING job whose heartbeat stopped is resumed; its written cells are skipped.
* The flow run is renamed ``sample-<job id 8>`` / ``full-<job id 8>`` and tagged
  ``job:<id>``; the job stores the flow run id, so each finds the other.
* Extract runs one task per chunk, ``chunks_in_flight`` chunks at a time on the flow's event
  loop (so one in-process limiter and one connection pool serve them all, and a chunk's slow
  tail overlaps with the next chunk's start).
* A watcher polls, every ``cancel_poll_seconds``, the job row (``extractflow job cancel``) and
  the flow run's state (a cancel in the Prefect UI): either stops new documents, keeps what
  is done and ends the job CANCELLED — needed because a flow called in-process is not stopped
  by Prefect. It also writes the job's heartbeat.
* Progress: counters in the database per written batch, and a Prefect progress artifact per
  chunk; the aggregate task publishes the summary table.
* The job ends FAILED (with the reason) only when the run cannot proceed: a fatal LLM error
  (bad credentials, unknown model) or the database gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run as runtime_flow_run
from prefect.states import Cancelled, Failed, State

from config.settings import Settings, get_settings
from extraction.db import session_scope
from extraction.errors import ExtractflowError
from extraction.llm.limits import SlotWaitStopped, combine
from extraction.models import JobKind, JobStatus, LogLevel, ProcessingJob
from extraction.run import jobs
from extraction.run.plan import chunked, create_run_job, load_plan, open_job, pending_documents
from extraction.run.runner import ChunkOutcome, ChunkRunner, FatalRunError
from flows import _preload
from flows._limits import ensure_limits, process_limiter, rate_bucket, slot_lease
from tasks.aggregate import aggregate
from tasks.extract import extract
from tasks.parse import parse
from tasks.prompt import prompt

__all__ = ["flow_run_name_for", "on_flow_cancelled", "on_flow_crashed", "run_job"]

logger = logging.getLogger(__name__)
_CANCEL_STATES = {StateType.CANCELLING, StateType.CANCELLED}
_preload.start()  # the LLM stack imports while Prefect sets the flow run up


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


# ---------------------------------------------------------------- job set-up


def _prepare(kind: JobKind, params: dict[str, Any], job_id: str | None, force: bool,
             flow_run_id: str | None, settings: Settings) -> tuple[uuid.UUID, bool]:
    with session_scope() as session:
        if job_id is None:
            job = create_run_job(session, settings, kind=kind, **params)
            job_id = str(job.id)
        job, resumed = open_job(session, job_id, stale_after=settings.job_stale_seconds,
                                force=force)
        if job.kind is not kind:
            raise ExtractflowError(f"job {job.id} is a {job.kind.value} job, not {kind.value}")
        jobs.attach_flow_run(session, job, flow_run_id)
        jobs.log_event(session, job.id, "job_started",
                       f"{'resumed' if resumed else 'started'} by flow run {flow_run_id}",
                       details={"flow_run_id": flow_run_id})
        return job.id, resumed


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


# ---------------------------------------------------------------- cancellation watcher


def _poll_job(job_id: uuid.UUID, touch: bool) -> bool:
    with session_scope() as session:
        if touch:
            jobs.touch_job(session, job_id)
        return jobs.is_cancelled(session, job_id)


async def _watch(job_id: uuid.UUID, flow_run_id: str | None, stop: asyncio.Event,
                 why: dict[str, str], settings: Settings) -> None:
    """Set ``stop`` when the job or its flow run is cancelled; keep the heartbeat going."""
    heartbeat_every = max(settings.cancel_poll_seconds, settings.job_stale_seconds / 4)
    loop = asyncio.get_running_loop()
    last_touch = loop.time()
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(get_client()) if flow_run_id else None
        while not stop.is_set():
            await asyncio.sleep(settings.cancel_poll_seconds)
            touch = loop.time() - last_touch >= heartbeat_every
            try:
                if await asyncio.to_thread(_poll_job, job_id, touch):
                    why.setdefault("reason", "cancelled by user")
                    stop.set()
                    break
                if touch:
                    last_touch = loop.time()
                if client is not None:
                    run = await client.read_flow_run(uuid.UUID(flow_run_id))  # type: ignore[arg-type]
                    if run.state is not None and run.state.type in _CANCEL_STATES:
                        why.setdefault("reason", "flow run cancelled in Prefect")
                        stop.set()
                        break
            except Exception as exc:  # noqa: BLE001 - a failed poll is retried next tick
                logger.warning("cancellation check failed: %s", exc)


# ---------------------------------------------------------------- the extract stage


def _plan(job_id: uuid.UUID, chunk_size: int) -> tuple[Any, list[list[uuid.UUID]]]:
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        plan = load_plan(session, job)
        todo = pending_documents(session, plan)
    return plan, chunked(todo, chunk_size)


def _status_of(job_ref: str) -> JobStatus | None:
    with session_scope() as session, contextlib.suppress(ExtractflowError):
        return jobs.get_job(session, job_ref).status
    return None


def _progress(job_id: uuid.UUID) -> float:
    with session_scope() as session:
        job = session.get(ProcessingJob, job_id)
        return float(job.progress or 0.0) if job else 0.0


def _log(job_id: uuid.UUID, event: str, message: str, level: LogLevel = LogLevel.INFO,
         details: dict[str, Any] | None = None) -> None:
    with session_scope() as session:
        jobs.log_event(session, job_id, event, message, level=level, details=details)


def build_extractor(settings: Settings, plan: Any, limiter: Any) -> tuple[Any, Any]:
    """The engine for a run: an LLM client behind ``limiter`` and an extractor in its mode."""
    _preload.wait()
    from extraction.llm.client import LLMClient
    from extraction.run.extractor import Extractor

    client = LLMClient.from_settings(settings, limiter=limiter, model=plan.model or None)
    return client, Extractor(client, mode=plan.mode, settings=settings)


async def _close(client: Any) -> None:
    for name in ("aclose", "close"):
        method = getattr(client, name, None)
        if method is not None:
            result = method()
            if asyncio.iscoroutine(result):
                await result
            return


async def _extract_stage(job_id: uuid.UUID, settings: Settings, stop: asyncio.Event,
                         *, resumed: bool) -> ChunkOutcome:
    plan, chunks = await asyncio.to_thread(_plan, job_id, settings.documents_per_chunk)
    total = ChunkOutcome()
    if not chunks:
        return total
    sizes = await ensure_limits(settings)
    slots = min(settings.llm_concurrency, sizes["concurrency"])
    if slots < 1:
        raise FatalRunError(
            f"the Prefect global concurrency limit '{settings.global_concurrency_limit_name}' "
            "has 0 slots: no LLM call can be made"
        )
    limiter = combine(process_limiter(settings.llm_concurrency), rate_bucket(settings))

    def waiting(holders: str) -> None:
        _log(job_id, "waiting_for_slots",
             f"waiting for {slots} slots of the global limit "
             f"'{settings.global_concurrency_limit_name}' ({holders})",
             level=LogLevel.WARNING)

    lease = slot_lease(settings, slots, on_wait=lambda holders: asyncio.to_thread(
        waiting, holders), job_id=job_id, flow_run_id=runtime_flow_run.id, stop=stop)
    # The stage holds the lease from here to the end (chunks share it), and asks for it while
    # the engine is built: a process's first acquisition takes a moment, and so does the end
    # of the LLM stack's import (flows/_preload.py) if the run got here quickly.
    entering = asyncio.ensure_future(lease.__aenter__())
    try:
        client, extractor = await asyncio.to_thread(build_extractor, settings, plan, limiter)
    except BaseException:
        entering.cancel()
        with contextlib.suppress(BaseException):
            await entering
        await lease.close()
        raise
    pending: set[asyncio.Future[ChunkOutcome]] = set()
    try:
        try:
            await entering
        except SlotWaitStopped:  # cancelled while waiting for slots: nothing was started
            stop.set()
            total.stopped = True
            return total
        per_doc_calls = 1 if plan.mode == "per_document" else max(1, len(plan.variables))
        in_flight_docs = -(-slots // per_doc_calls) + max(2, slots // 4)
        runner = ChunkRunner(
            plan, extractor, session_factory=session_scope, documents_in_flight=in_flight_docs,
            batch_documents=settings.documents_per_chunk,
            flush_seconds=settings.progress_flush_seconds, stop=stop, check_written=resumed,
            stop_after_unreachable=settings.stop_after_unreachable_documents,
        )
        artifact_id = await acreate_progress_artifact(
            progress=await asyncio.to_thread(_progress, job_id),
            key=f"job-{str(job_id)[:8]}-progress",
            description=f"Documents processed by job {job_id}",
        )
        queue = list(enumerate(chunks))
        while queue or pending:
            while queue and len(pending) < settings.chunks_in_flight and not stop.is_set() \
                    and runner.fatal is None:
                index, chunk = queue.pop(0)
                pending.add(asyncio.ensure_future(extract(runner, lease, chunk, index)))
            if not pending:
                break
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                total.add(future.result())
            await aupdate_progress_artifact(
                artifact_id, progress=await asyncio.to_thread(_progress, job_id)
            )
        if queue:
            total.stopped = True
    finally:
        for future in pending:
            future.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*pending, return_exceptions=True)
        if entering.done() and not entering.cancelled() and entering.exception() is None:
            await lease.__aexit__(None, None, None)
        await lease.close()
        await _close(client)
    return total


# ---------------------------------------------------------------- the whole run


async def run_job(
    kind: JobKind,
    params: dict[str, Any],
    *,
    job_id: str | None = None,
    force: bool = False,
) -> dict[str, Any] | State:
    """Run a sample or full job end to end; returns the job as a dict, or a final state.

    Returns a ``Cancelled`` state when the job was cancelled and a ``Failed`` state (with the
    reason) when it could not proceed, so the flow run ends in the matching Prefect state.
    """
    settings = get_settings()
    flow_run_id = runtime_flow_run.id
    try:
        job_uuid, resumed = await asyncio.to_thread(
            _prepare, kind, params, job_id, force, flow_run_id, settings
        )
    except ExtractflowError as exc:
        if job_id is not None and await asyncio.to_thread(_status_of, job_id) is \
                JobStatus.CANCELLED:
            return Cancelled(message=f"job {job_id} was cancelled before it started")
        return Failed(message=str(exc))
    await _label_flow_run(flow_run_id, kind, job_uuid)

    stop = asyncio.Event()
    why: dict[str, str] = {}
    watcher = asyncio.create_task(_watch(job_uuid, flow_run_id, stop, why, settings))
    outcome: str = "complete"
    reason: str | None = None
    try:
        await parse(job_uuid)
        await prompt(job_uuid)
        await _extract_stage(job_uuid, settings, stop, resumed=resumed)
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


def _job_for_run(session: Any, flow_run: Any) -> ProcessingJob | None:
    from sqlalchemy import select

    job = session.scalar(
        select(ProcessingJob).where(ProcessingJob.flow_run_id == str(flow_run.id))
    )
    if job is None:
        for tag in flow_run.tags or []:
            if tag.startswith("job:"):
                with contextlib.suppress(ExtractflowError):
                    return jobs.get_job(session, tag[4:])
        job_id = (flow_run.parameters or {}).get("job_id")
        if job_id:
            with contextlib.suppress(ExtractflowError):
                return jobs.get_job(session, job_id)
    return job


def on_flow_cancelled(flow: Any, flow_run: Any, state: Any) -> None:
    """A served or worker run killed by a cancel: the job becomes CANCELLED, work kept."""
    with session_scope() as session:
        job = _job_for_run(session, flow_run)
        if job is not None and job.status not in jobs.TERMINAL:
            jobs.cancel_job(session, job, reason="flow run cancelled in Prefect")


def on_flow_crashed(flow: Any, flow_run: Any, state: Any) -> None:
    """A crashed run leaves its job PROCESSING (resumable); say so in the job's log."""
    with session_scope() as session:
        job = _job_for_run(session, flow_run)
        if job is not None and job.status is JobStatus.PROCESSING:
            jobs.log_event(
                session, job.id, "flow_run_crashed",
                f"flow run crashed ({getattr(state, 'message', '')}); resume with "
                f"`extractflow run resume {job.id}`", level=LogLevel.ERROR,
            )
