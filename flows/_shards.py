"""A full run over many workers: the parent's follow-up of its shards, and one shard's run.

Mechanism: each shard is a flow run of the deployed ``full-run-shard`` flow, started with
Prefect's ``run_deployment(..., timeout=0, as_subflow=True)`` on the deployment's work pool,
so any worker of the pool takes any shard and the UI shows the shards under the parent.
Prefect-native and nothing more to run: a Dask or Ray task runner would need its own cluster
beside the work pool, and would put every shard's LLM client in processes the pool's
workers do not manage. The policy (which shard to start, retry, give up on) is the domain's
(:mod:`extraction.run.shards`); this module only asks Prefect and acts.

* :func:`sharding_available` — a Prefect server with the shard deployment; else the parent
  runs in its own process (the embedded mode), and says so in the job's log.
* :func:`run_shards` — the parent's extract stage: plan the shards, start them, poll their
  flow runs and heartbeats, retry the dead ones, cancel them all when the job is cancelled.
* :func:`run_shard` — the body of the shard flow: the extract stage over the shard's
  documents left, in its own slot lease (so the global limit holds across every shard and
  worker), with a heartbeat on the shard's row.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.runtime import flow_run as runtime_flow_run
from prefect.states import Cancelled, Cancelling, Crashed, Failed, State

from config.settings import Settings, get_settings
from extraction.db import session_scope
from extraction.errors import ExtractflowError, FatalRunError
from extraction.models import JobKind, LogLevel
from extraction.run import lifecycle, preload, shards
from extraction.run.assembly import RunOptions

__all__ = ["run_shard", "run_shards", "sharding_available"]

logger = logging.getLogger(__name__)


async def sharding_available(settings: Settings) -> str | None:
    """None when shards can run on workers; else why not (the parent runs them itself)."""
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return "no Prefect server is configured (PREFECT_API_URL), so there is no work pool"
    name = settings.deployment_full_run_shard
    try:
        async with get_client() as client:
            await client.read_deployment_by_name(name)
    except ObjectNotFound:
        return f"the Prefect server has no deployment '{name}' (prefect deploy --all)"
    return None


def _in_db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
    def call() -> Any:
        with session_scope() as session:
            return fn(session, *args, **kwargs)

    return asyncio.to_thread(call)


async def _states(client: Any, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
        id=FlowRunFilterId(any_=[uuid.UUID(i) for i in ids])))
    return {str(r.id): r.state.type.value for r in runs if r.state is not None}


async def _cancel(client: Any, states: Mapping[str, str], message: str) -> None:
    for run_id, state in states.items():
        if state not in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            with contextlib.suppress(Exception):
                await client.set_flow_run_state(uuid.UUID(run_id), Cancelling(message=message),
                                                force=True)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def run_shards(job_id: uuid.UUID, settings: Settings, stop: asyncio.Event, *,
                     shard_count: int | None, shard_size: int | None,
                     knobs: Mapping[str, int | None],
                     on_progress: Callable[[], Awaitable[None]] | None = None) -> str:
    """The parent's extract stage over shards; returns ``complete`` or ``cancelled``.

    Raises:
        FatalRunError: A shard did not finish within ``settings.shard_attempts``.
    """
    from prefect.deployments import arun_deployment

    planned = await _in_db(shards.plan_shards, job_id, shards=shard_count,
                           shard_size=shard_size)
    await asyncio.to_thread(
        lifecycle.log_event, job_id, "shards_running",
        f"{len(planned)} shards on the work pool of '{settings.deployment_full_run_shard}'")
    # The shard flow takes the knobs under full_run's parameter names.
    names = {"stop_after_unreachable": "stop_after_unreachable_documents"}
    parameters = {names.get(k, k): v for k, v in knobs.items() if v is not None}
    running_since: dict[str, datetime] = {}
    async with get_client() as client:
        while True:
            views = await _in_db(shards.shard_views, job_id)
            states = await _states(client, [v.flow_run_id for v in views if v.flow_run_id])
            now = datetime.now(UTC)
            for run_id, state in states.items():
                if state == "RUNNING":
                    running_since.setdefault(run_id, now)
            views = await _in_db(shards.shard_views, job_id, states, running_since)
            if stop.is_set():
                await _cancel(client, states, "the sharded job was cancelled")
                return "cancelled"
            decision = shards.decide(views, now=now, stale_seconds=settings.job_stale_seconds,
                                     max_attempts=settings.shard_attempts)
            if decision.cancelled:
                await _cancel(client, states, "a shard of the job was cancelled")
                return "cancelled"
            if decision.failed:
                await _cancel(client, states, "the sharded job failed")
                raise FatalRunError(decision.failed)
            for run_id in decision.crashed:
                view = next(v for v in views if v.flow_run_id == run_id)
                await _in_db(shards.record_error, job_id, view.index,
                             f"no heartbeat for {settings.job_stale_seconds:.0f} s (its worker "
                             "is gone)")
                with contextlib.suppress(Exception):
                    await client.set_flow_run_state(uuid.UUID(run_id), Crashed(
                        message="no heartbeat from the shard: its worker is gone"), force=True)
            for index in decision.start:
                run = await arun_deployment(
                    settings.deployment_full_run_shard,
                    parameters={"job_id": str(job_id), "shard": index, **parameters},
                    timeout=0, as_subflow=True,
                    flow_run_name=f"full-{str(job_id)[:8]}-shard-{index}",
                    tags=[f"job:{job_id}", "extractflow", f"shard:{index}"],
                )
                await _in_db(shards.record_start, job_id, index, str(run.id))
            if on_progress is not None:
                await on_progress()
            if decision.finished:
                return "complete"
            await _sleep(stop, settings.shard_poll_seconds)


async def _heartbeat(job_id: uuid.UUID, index: int, every: float) -> None:
    while True:
        try:
            await _in_db(shards.touch_shard, job_id, index)
        except Exception as exc:  # noqa: BLE001 - retried next tick; the parent is patient
            logger.warning("could not write the heartbeat of shard %s: %s", index, exc)
        await asyncio.sleep(every)


async def run_shard(job_id: str, index: int, knobs: Mapping[str, int | None]
                    ) -> dict[str, Any] | State:
    """One shard of a job: extract its documents left; the parent finishes the job."""
    from flows._run import _extract_stage, _watch

    preload.start()
    settings = get_settings()
    job_uuid = uuid.UUID(job_id)
    flow_run_id = runtime_flow_run.id
    try:
        options = RunOptions.resolve(settings, **knobs)
    except ExtractflowError as exc:
        return Failed(message=str(exc))
    stop = asyncio.Event()
    why: dict[str, str] = {}
    beat = asyncio.create_task(_heartbeat(job_uuid, index,
                                          max(0.5, settings.job_stale_seconds / 6)))
    watcher = asyncio.create_task(_watch(job_uuid, flow_run_id, stop, why, settings))
    try:
        outcome = await _extract_stage(job_uuid, options, settings, stop, resumed=True,
                                       shard=index)
    except ExtractflowError as exc:
        reason = exc.reason if isinstance(exc, FatalRunError) else str(exc)
        await _in_db(shards.record_error, job_uuid, index, reason)
        return Failed(message=f"shard {index}: {reason}")
    finally:
        for task in (beat, watcher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if stop.is_set() or outcome.stopped:
        return Cancelled(message=f"shard {index}: {why.get('reason', 'stopped')}")
    left = await _in_db(shards.shard_pending, job_uuid, index)
    if left:
        return Failed(message=f"shard {index}: {len(left)} documents left")
    await asyncio.to_thread(functools.partial(
        lifecycle.log_event, job_uuid, "shard_finished",
        f"shard {index}: {outcome.documents} documents by flow run {flow_run_id}",
        level=LogLevel.INFO, details={"shard": index, "flow_run_id": flow_run_id}))
    return {"job_id": job_id, "shard": index, "documents": outcome.documents,
            "documents_completed": outcome.documents_completed,
            "llm_calls": outcome.llm_calls, "kind": JobKind.FULL.value}
