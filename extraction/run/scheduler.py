"""The extract stage of a run: its chunks through one engine, a few at a time, in one lease.

:func:`run_extract_stage` is the whole stage, without Prefect (the flow passes in what is
Prefect's: the slot lease over the global limit, its extract task as ``run_chunk``, its
progress artifact as ``on_progress``):

* The run's slot lease is asked for *while* the engine is built: a process's first
  acquisition takes a moment, and so does the rest of the LLM stack's import
  (:mod:`extraction.run.preload`) when a run gets here quickly. The lease is then held to
  the end of the stage — its chunks share it — and given back at once when the stage ends.
* One :class:`~extraction.run.runner.ChunkRunner` serves every chunk, so one in-process
  limiter and one connection pool serve them all; ``chunks_in_flight`` chunks run at the
  same time on the event loop, so a chunk's slow tail overlaps with the next chunk's start.
* No new chunk starts once ``stop`` is set (a cancel, or the run's budget cap reached: then
  the total's ``stop_reason`` says so) or the runner met a fatal error; the chunks not
  started are counted as ``stopped``.
* Whatever happens, chunks still running are cancelled, the lease is released and the LLM
  client closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from config.settings import Settings
from extraction.llm.limits import SlotLease, SlotWaitStopped
from extraction.run.assembly import (
    RunOptions,
    calls_per_document,
    close_engine,
    documents_in_flight,
)
from extraction.run.budget import open_budget
from extraction.run.plan import RunPlan
from extraction.run.runner import ChunkOutcome, ChunkRunner, DocumentExtractor

__all__ = ["RunChunk", "run_chunk_in_lease", "run_extract_stage", "schedule_chunks"]

#: Runs one chunk: ``(runner, lease, document_ids, index) -> outcome``.
RunChunk = Callable[[ChunkRunner, SlotLease, list[uuid.UUID], int], Awaitable[ChunkOutcome]]


async def run_chunk_in_lease(runner: ChunkRunner, lease: SlotLease,
                             document_ids: list[uuid.UUID], index: int) -> ChunkOutcome:
    """Extract and store one chunk while holding the run's global slots.

    ``index`` (the chunk's place in the run) is unused here; the flow's task names its
    task runs after it.
    """
    async with lease:
        return await runner.run_chunk(document_ids)


async def schedule_chunks(
    chunks: Sequence[list[uuid.UUID]],
    start: Callable[[int, list[uuid.UUID]], Awaitable[ChunkOutcome]],
    *,
    in_flight: int,
    may_start: Callable[[], bool],
    after_round: Callable[[], Awaitable[None]] | None = None,
) -> ChunkOutcome:
    """Run ``chunks`` in order, at most ``in_flight`` at a time; returns their sum.

    A new chunk starts only while ``may_start()`` says so; if chunks are left unstarted the
    total is ``stopped``. ``after_round`` is awaited each time one or more chunks finished.
    An error of a chunk is raised once that chunk is seen to finish, after the others are
    cancelled.
    """
    total = ChunkOutcome()
    queue = list(enumerate(chunks))
    pending: set[asyncio.Future[ChunkOutcome]] = set()
    try:
        while queue or pending:
            while queue and len(pending) < in_flight and may_start():
                index, chunk = queue.pop(0)
                pending.add(asyncio.ensure_future(start(index, chunk)))
            if not pending:
                break
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                total.add(future.result())
            if after_round is not None:
                await after_round()
        if queue:
            total.stopped = True
    finally:
        for future in pending:
            future.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*pending, return_exceptions=True)
    return total


async def run_extract_stage(
    plan: RunPlan,
    chunks: Sequence[list[uuid.UUID]],
    *,
    options: RunOptions,
    slots: int,
    lease: SlotLease,
    build: Callable[[], tuple[Any, DocumentExtractor]],
    session_factory: Callable[[], Any],
    stop: asyncio.Event,
    resumed: bool,
    run_chunk: RunChunk = run_chunk_in_lease,
    on_progress: Callable[[], Awaitable[None]] | None = None,
    settings: Settings | None = None,
) -> ChunkOutcome:
    """Extract every chunk of a run; returns what they did in total.

    Args:
        plan: The job's plan.
        chunks: The documents still to extract, in chunks (empty: nothing is built).
        options: The run's knobs (chunks in flight, write cadence, unreachable stop).
        slots: The global slots ``lease`` holds (they size the documents in flight).
        lease: The run's hold on the global limit, entered once here for the whole stage.
        build: Makes ``(client, extractor)``; blocking, so it runs in a worker thread
            (:func:`extraction.run.assembly.build_engine`).
        session_factory: Sessions for the runner (``extraction.db.session_scope``).
        stop: Set when the run must stop starting documents (cancellation).
        resumed: The job was resumed: look for the cells it already wrote.
        run_chunk: Runs one chunk (the flow passes its extract task).
        on_progress: Awaited before the first chunk and after chunks finish.
        settings: For the run's budget cap (:func:`extraction.run.budget.open_budget`);
            None: no cap.

    Raises:
        FatalRunError: The run cannot go on (see :class:`~extraction.run.runner.ChunkRunner`),
            or it has a cap on a model without a price.
        ExtractflowError: The engine could not be built, or the database failed.
    """
    if not chunks:
        return ChunkOutcome()
    budget = None if settings is None else await asyncio.to_thread(
        open_budget, session_factory, plan, options.max_cost_usd, settings)
    entering = asyncio.ensure_future(lease.__aenter__())
    try:
        client, extractor = await asyncio.to_thread(build)
    except BaseException:
        entering.cancel()
        with contextlib.suppress(BaseException):
            await entering
        await lease.close()
        raise
    try:
        try:
            await entering
        except SlotWaitStopped:  # stopped while waiting for slots: nothing was started
            stop.set()
            return ChunkOutcome(stopped=True)
        runner = ChunkRunner(
            plan, extractor, session_factory=session_factory,
            documents_in_flight=documents_in_flight(slots, calls_per_document(plan)),
            batch_documents=options.documents_per_chunk,
            flush_seconds=options.progress_flush_seconds, stop=stop, check_written=resumed,
            stop_after_unreachable=options.stop_after_unreachable, budget=budget,
        )
        if on_progress is not None:
            await on_progress()
        total = await schedule_chunks(
            chunks, lambda index, chunk: run_chunk(runner, lease, chunk, index),
            in_flight=options.chunks_in_flight,
            may_start=lambda: not stop.is_set() and runner.fatal is None,
            after_round=on_progress,
        )
        if budget is not None and budget.reached:
            total.stop_reason = budget.reason  # after the documents in flight were settled
        return total
    finally:
        if entering.done() and not entering.cancelled() and entering.exception() is None:
            await lease.__aexit__(None, None, None)
        await lease.close()
        await close_engine(client)
