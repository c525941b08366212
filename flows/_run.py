"""What ``sample_run`` and ``full_run`` share: the DAG parse → prompt → extract → aggregate
around the run's job, composed from the domain (``extraction.run``) and Prefect.

The decisions live in the domain: opening the job and finding it again
(:mod:`extraction.run.lifecycle`), sizing and building the engine
(:mod:`extraction.run.assembly`), the chunk scheduler (:mod:`extraction.run.scheduler`) and
the cancellation watcher (:mod:`extraction.run.watch`). This module adds what is Prefect's:

* the flow run is named ``<project>/<kind>-<job id 8>`` and tagged ``project:<name>``,
  ``kind:<sample|full>`` and ``job:<id>``, and its parameters are replaced by the ones that
  ran (resolved mode and model, the seed drawn, the job id — so Prefect's Retry resumes the
  job); the job stores the flow run id, so each finds the other;
* extractflow's own lines go to the flow run's log (the plan, each chunk's progress, the
  job's events: failed documents with their reason, the final summary), and the results
  are artifacts: the summary, a preview of the first documents' values, the failures;
* a SIGTERM that comes with a cancel from Prefect (a worker or ``serve`` stopping the run)
  stops the run like a cancel from the CLI: no new LLM call, the summary written, the job
  CANCELLED, no crash;
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
import signal
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prefect.artifacts import (
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run as runtime_flow_run
from prefect.states import Cancelled, Failed, State

from config.settings import Settings, get_settings
from extraction.db import session_scope
from extraction.errors import ExtractflowError, FatalRunError
from extraction.models import JobKind, JobStatus, LogLevel
from extraction.run import lifecycle, preload, report
from extraction.run.assembly import RunOptions, build_engine, call_limiter, run_slots
from extraction.run.batch import is_batch_job
from extraction.run.runner import ChunkOutcome
from extraction.run.scheduler import run_extract_stage
from extraction.run.watch import watch_job
from flows._limits import (
    ensure_limits,
    process_limiter,
    rate_bucket,
    slot_lease,
    stop_new_calls,
)
from tasks.aggregate import aggregate
from tasks.batch import batch_step, job_dict
from tasks.extract import extract
from tasks.parse import parse
from tasks.prompt import prompt

__all__ = ["flow_run_name_for", "on_flow_cancelled", "on_flow_crashed", "run_job", "run_tags"]

logger = logging.getLogger(__name__)
#: Documents shown in the results preview artifact.
PREVIEW_DOCUMENTS = 10
_CANCEL_STATES = {StateType.CANCELLING, StateType.CANCELLED}


def _run_logger() -> Any:
    """The flow run's logger (its lines reach the Prefect UI), else this module's."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def flow_run_name_for(kind: JobKind, job_id: uuid.UUID | str | None, project: str) -> str:
    """``<project>/<kind>-<job id 8>``, the same for local, served and deployment runs."""
    return report.run_label(project, kind, job_id)


run_tags = report.run_tags


async def _label_flow_run(flow_run_id: str | None, kind: JobKind, project: str,
                          job_id: uuid.UUID | None,
                          parameters: dict[str, Any] | None = None) -> None:
    """Name and tag the flow run after its job and record the parameters that ran, so the
    UI shows the truth and the CLI and the UI find each other."""
    if not flow_run_id:
        return
    try:
        async with get_client() as client:
            run = await client.read_flow_run(uuid.UUID(flow_run_id))
            tags = list(dict.fromkeys([*(run.tags or []), *run_tags(kind, project, job_id)]))
            merged = None
            if parameters is not None:
                merged = {**(run.parameters or {}),
                          **{k: v for k, v in parameters.items() if v is not None}}
            await client.update_flow_run(
                uuid.UUID(flow_run_id), name=flow_run_name_for(kind, job_id, project),
                tags=tags, parameters=merged,
            )
    except Exception as exc:  # noqa: BLE001 - cosmetic; the job still records the run id
        logger.warning("could not label flow run %s: %s", flow_run_id, exc)


async def _relay(job_id: uuid.UUID, cursor: report.EventCursor) -> None:
    """The job's new events as lines of the flow run's log."""
    log = _run_logger()
    for level, message in await asyncio.to_thread(lifecycle.new_events, job_id, cursor):
        log.log(logging.getLevelName(level.value), message)


class _CancelIsNotAnError(logging.Filter):
    """Prefect's async engine logs its last line, ``Finished in state …``, at ERROR for any
    state but Completed; a cancel someone asked for is not an error, so that line is INFO
    for a Cancelled state (the UI's Logs tab then shows no error for a clean cancel)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith(
                "Finished in state Cancelled"):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _quiet_cancel_line() -> None:
    engine = logging.getLogger("prefect.flow_runs")
    if not any(isinstance(f, _CancelIsNotAnError) for f in engine.filters):
        engine.addFilter(_CancelIsNotAnError())


@contextlib.contextmanager
def _graceful_sigterm(on_term: Any) -> Any:
    """While the block runs, a SIGTERM calls ``on_term`` in the event loop instead of
    Prefect's handler (which raises ``TerminationSignal`` and crashes the run).

    A worker or ``serve`` cancelling a run sends SIGTERM and waits 30 s before SIGKILL:
    enough to stop new calls, let the ones in flight finish and write the summary. Only in
    the main thread (a CLI run is in a thread of its own and is cancelled through its job).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        loop.call_soon_threadsafe(on_term)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


async def _publish_progress(job_id: uuid.UUID, artifact: dict[str, Any]) -> None:
    """The progress artifact at the job's recorded progress (created on first use)."""
    progress = await asyncio.to_thread(lifecycle.job_progress, job_id)
    if "id" in artifact:
        await aupdate_progress_artifact(artifact["id"], progress=progress)
        return
    artifact["id"] = await acreate_progress_artifact(
        progress=progress, key=f"job-{str(job_id)[:8]}-progress",
        description=f"Documents processed by job {job_id}",
    )


async def _publish_results(job_id: uuid.UUID, artifact: dict[str, Any]) -> None:
    """The final progress, and the preview and failures tables of a finished job."""
    preview, failed, _ = await asyncio.to_thread(lifecycle.results_tables, job_id,
                                                 documents=PREVIEW_DOCUMENTS)
    await _publish_progress(job_id, artifact)
    short = str(job_id)[:8]
    if preview:
        await acreate_table_artifact(
            preview, key=f"job-{short}-preview",
            description=f"Results preview of job {job_id}: the first {PREVIEW_DOCUMENTS} "
                        f"documents; all of them: `{report.results_command(job_id)}`")
    if failed:
        await acreate_table_artifact(
            failed, key=f"job-{short}-failures",
            description=f"Documents that failed in job {job_id}, with the reason")


async def _extract_stage(job_id: uuid.UUID, options: RunOptions, settings: Settings,
                         stop: asyncio.Event, *, resumed: bool,
                         artifact: dict[str, Any] | None = None,
                         cursor: report.EventCursor | None = None,
                         shard: int | None = None) -> ChunkOutcome:
    """The extract stage in this process: the job's documents left (of one ``shard``)."""
    plan, chunks = await asyncio.to_thread(functools.partial(
        lifecycle.load_chunks, job_id, options.documents_per_chunk, shard=shard))
    if not chunks:
        return ChunkOutcome()
    sizes = await ensure_limits(settings)
    name = settings.global_concurrency_limit_name
    slots = run_slots(options.llm_concurrency, sizes["concurrency"], limit_name=name)
    process = process_limiter(options.llm_concurrency)
    limiter = call_limiter(slots, process, rate_bucket(settings))

    def waiting(holders: str) -> None:
        lifecycle.log_event(
            job_id, "waiting_for_slots",
            f"waiting for {slots} slots of the global limit '{name}' ({holders})",
            level=LogLevel.WARNING)

    return await run_extract_stage(
        plan, chunks, options=options, slots=slots,
        lease=slot_lease(settings, slots,
                         on_wait=lambda holders: asyncio.to_thread(waiting, holders),
                         job_id=job_id, flow_run_id=runtime_flow_run.id, stop=stop),
        build=functools.partial(build_engine, settings, plan, limiter),
        session_factory=session_scope, stop=stop, resumed=resumed, run_chunk=extract,
        on_progress=(_progress_reporter(job_id, artifact, cursor)
                     if shard is None and artifact is not None and cursor is not None
                     else None),
        settings=settings,
    )


def _progress_reporter(job_id: uuid.UUID, artifact: dict[str, Any],
                       cursor: report.EventCursor) -> Callable[[], Awaitable[None]]:
    """Publishes the job's progress (read from the database) as a Prefect progress artifact,
    a progress line and the job's new log events in the flow run's logs."""

    async def report_progress() -> None:
        await _publish_progress(job_id, artifact)
        _run_logger().info(await asyncio.to_thread(lifecycle.progress_line, job_id))
        await _relay(job_id, cursor)

    return report_progress


async def _sharded_or_here(job_id: uuid.UUID, options: RunOptions, settings: Settings,
                           stop: asyncio.Event, *, resumed: bool,
                           sharding: tuple[int | None, int | None] | None,
                           knobs: Mapping[str, int | float | None],
                           artifact: dict[str, Any], cursor: report.EventCursor
                           ) -> tuple[str | None, ChunkOutcome]:
    """The extract stage over shards on the work pool when asked and possible, else here.

    Returns ``cancelled`` when the shards were cancelled (else None), and the in-process
    outcome (empty for a sharded run).
    """
    from flows._shards import run_shards, sharding_available

    if sharding is not None:
        why_not = await sharding_available(settings)
        if why_not is None:
            result = await run_shards(job_id, settings, stop, shard_count=sharding[0],
                                      shard_size=sharding[1], knobs=knobs,
                                      on_progress=_progress_reporter(job_id, artifact, cursor))
            return ("cancelled" if result == "cancelled" else None), ChunkOutcome()
        note = f"shards were asked for, but {why_not}: the whole run goes on in this process"
        _run_logger().warning(note)
        await asyncio.to_thread(functools.partial(
            lifecycle.log_event, job_id, "shards_unavailable", note, level=LogLevel.WARNING))
    total = await _extract_stage(job_id, options, settings, stop, resumed=resumed,
                                 artifact=artifact, cursor=cursor)
    return None, total


async def run_job(
    kind: JobKind,
    params: dict[str, Any],
    *,
    job_id: str | None = None,
    force: bool = False,
    knobs: Mapping[str, int | float | None] | None = None,
    shards: int | None = None,
    shard_size: int | None = None,
    batch: bool = False,
) -> dict[str, Any] | State:
    """Run a sample or full job end to end; returns the job as a dict, or a final state.

    ``knobs`` are the flow's tuning parameters (:class:`~extraction.run.assembly.RunOptions`;
    None → settings). ``shards`` / ``shard_size`` split a full run into child flow runs of
    the shard deployment (:mod:`flows._shards`); a job created with them, or resumed with
    its shards stored, is sharded too. Returns a ``Cancelled`` state when the job was
    cancelled and a ``Failed`` state (with the reason) when it could not proceed, so the flow
    run ends in the matching Prefect state. ``batch`` (or a job that
    already runs in batch mode) sends the requests through the provider's Batch API
    (:mod:`extraction.run.batch`): the flow submits them and returns the job still
    PROCESSING, and a collect step finishes it.
    """
    preload.start()  # a deployment's run enters here without a bootstrap (flows/bootstrap.py)
    settings = get_settings()
    flow_run_id = runtime_flow_run.id
    log = _run_logger()
    _quiet_cancel_line()
    try:
        options = RunOptions.resolve(settings, **(knobs or {}))
        job_uuid, resumed = await asyncio.to_thread(
            functools.partial(lifecycle.start_job, kind, params, job_id=job_id, force=force,
                              flow_run_id=flow_run_id, settings=settings))
    except ExtractflowError as exc:
        await _label_flow_run(flow_run_id, kind, str(params.get("project")), None)
        if job_id is not None and await asyncio.to_thread(lifecycle.job_status, job_id) is \
                JobStatus.CANCELLED:
            log.warning("job %s was cancelled before it started", job_id)
            return Cancelled(message=f"job {job_id} was cancelled before it started")
        log.error("the run could not start: %s", exc)
        return Failed(message=str(exc))
    facts = await asyncio.to_thread(lifecycle.run_facts, job_uuid)
    await _label_flow_run(flow_run_id, kind, facts["project"], job_uuid, facts["parameters"])
    log.info("%s job %s of project %s (%s)", "resuming" if resumed else "starting", job_uuid,
             facts["project"], report.results_command(job_uuid))

    stop = asyncio.Event()
    why: dict[str, str] = {}
    terminated = asyncio.Event()

    def on_term() -> None:  # SIGTERM from a worker or serve: stop like a cancel
        stop_new_calls()
        terminated.set()
        why.setdefault("reason", "flow run cancelled in Prefect")
        stop.set()

    artifact: dict[str, Any] = {}
    cursor = report.EventCursor()
    watcher = asyncio.create_task(_watch(job_uuid, flow_run_id, stop, why, settings))
    outcome: str = "complete"
    reason: str | None = None
    waiting = False
    with _graceful_sigterm(on_term):
        try:
            await parse(job_uuid)
            await prompt(job_uuid)
            log.info(await asyncio.to_thread(lifecycle.plan_line, job_uuid))
            ended: str | None = None
            total = ChunkOutcome()
            if batch or await asyncio.to_thread(is_batch_job, job_uuid):
                waiting = not (await batch_step(job_uuid, mark=batch))["done"]
            else:
                sharding = await asyncio.to_thread(_sharding, job_uuid, shards, shard_size)
                ended, total = await _sharded_or_here(
                    job_uuid, options, settings, stop, resumed=resumed, sharding=sharding,
                    knobs=knobs or {}, artifact=artifact, cursor=cursor)
            if ended == "cancelled" and not stop.is_set():
                outcome, reason = "cancelled", "a shard of the job was cancelled"
            elif stop.is_set():
                outcome, reason = "cancelled", (total.stop_reason
                                                or why.get("reason", "cancelled"))
        except FatalRunError as exc:
            outcome, reason = "failed", exc.reason
        except ExtractflowError as exc:
            outcome, reason = ("cancelled", why.get("reason")) if terminated.is_set() \
                else ("failed", str(exc))
        except Exception as exc:  # a bug must not leave the job PROCESSING forever
            log.exception("job %s stopped by an unexpected error", job_uuid)
            outcome, reason = "failed", f"unexpected error: {type(exc).__name__}: {exc}"
        finally:
            stop.set()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if terminated.is_set() and not await _cancel_requested(flow_run_id):
            # A SIGTERM without a cancel (the worker itself stopping): the job stays
            # PROCESSING, resumable, and the run ends as Prefect would end it.
            from prefect.exceptions import TerminationSignal

            log.warning("stopped by SIGTERM; resume with `extractflow run resume %s`",
                        job_uuid)
            raise TerminationSignal(signal=signal.SIGTERM)
        if waiting and outcome == "complete":  # the provider has the requests; collect later
            return await job_dict(job_uuid)
        try:
            job = await aggregate(job_uuid, outcome, reason)
        except ExtractflowError as exc:  # the database is gone: nothing more can be recorded
            return Failed(message=f"job {job_uuid}: {reason or exc}; could not record it: {exc}")
        await _relay(job_uuid, cursor)
        try:
            await _publish_results(job_uuid, artifact)
        except Exception as exc:  # noqa: BLE001 - the job is recorded; artifacts are a view
            log.warning("could not publish the results artifacts: %s", exc)
    if job["status"] == JobStatus.CANCELLED.value:
        return Cancelled(message=f"job {job_uuid} cancelled: {job.get('error') or reason}",
                         data=job)
    if job["status"] == JobStatus.FAILED.value:
        return Failed(message=f"job {job_uuid} failed: {job.get('error')}", data=job)
    return job


async def _cancel_requested(flow_run_id: str | None) -> bool:
    """Whether Prefect holds the flow run as cancelling (or cancelled)."""
    if not flow_run_id:
        return False
    try:
        async with get_client() as client:
            return await _flow_run_cancelled(client, uuid.UUID(flow_run_id))
    except Exception:  # noqa: BLE001 - cannot tell: treat the SIGTERM as a cancel
        return True


def _sharding(job_id: uuid.UUID, shards: int | None, shard_size: int | None
              ) -> tuple[int | None, int | None] | None:
    from extraction.run.shards import requested

    with session_scope() as session:
        return requested(session, job_id, shards=shards, shard_size=shard_size)


# ---------------------------------------------------------------- Prefect state hooks


def on_flow_cancelled(flow: Any, flow_run: Any, state: Any) -> None:
    """A served or worker run killed by a cancel: the job becomes CANCELLED, work kept."""
    lifecycle.cancel_for_flow_run(str(flow_run.id), tags=flow_run.tags or [],
                                  parameters=flow_run.parameters)


def on_flow_crashed(flow: Any, flow_run: Any, state: Any) -> None:
    """A crashed run leaves its job PROCESSING (resumable); say so in the job's log."""
    lifecycle.note_crash(str(flow_run.id), getattr(state, "message", ""),
                         tags=flow_run.tags or [], parameters=flow_run.parameters)
