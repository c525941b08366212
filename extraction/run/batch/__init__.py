"""Batch mode: a run's requests through the provider's Batch API, at about half the price.

How waiting works across restarts: nothing waits in a process. :func:`advance` does one
idempotent step for a job — submit what is not submitted (:mod:`.submit`), ask the provider
about every batch not collected, store the answers of those that finished (:mod:`.collect`),
resubmit failed lines once — and returns whether the job is done. The state lives in the
database (``llm_batches``, one row per provider batch, its ids stored the moment they exist),
so any process can take the next step: the ``full-run`` flow takes the first one and ends
(the worker is free; the job stays PROCESSING, waiting), then ``extractflow run collect
JOB`` (``--wait`` to loop), ``run resume JOB``, or the scheduled ``collect-batches``
deployment take the following ones. A process killed at any point loses nothing: the next
step adopts a batch created just before the kill, re-collects a batch whose collection was
cut short, and never stores a cell twice.

A job cancelled by its user has its provider batches cancelled at the next step (and at once
by ``extractflow job cancel``).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from config.settings import Settings, get_settings
from extraction.db import session_scope
from extraction.errors import ExtractflowError
from extraction.llm.batch_api import BatchAPI
from extraction.models import JobStatus, LLMBatch, LogLevel, ProcessingJob, utcnow
from extraction.run import jobs, progress
from extraction.run.batch.collect import collect_ready
from extraction.run.batch.context import TERMINAL_STATUSES, BatchContext
from extraction.run.batch.submit import finish_submissions, submit_new_documents
from extraction.run.plan import load_plan

__all__ = ["BatchState", "advance", "batch_state", "cancel_batches", "is_batch_job",
           "jobs_waiting", "mark_batch_job"]


@dataclass
class BatchState:
    """Where a batch job stands after a step."""

    job_id: str
    done: bool
    batches: int = 0
    waiting: int = 0
    submitted_now: int = 0
    collected_now: int = 0
    lines_total: int = 0
    lines_done: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        if self.done:
            return f"job {self.job_id}: every batch collected ({self.batches} batches)"
        return (f"job {self.job_id}: waiting for {self.waiting} of {self.batches} batches, "
                f"{self.lines_done}/{self.lines_total} lines done "
                f"({', '.join(f'{k} {v}' for k, v in sorted(self.statuses.items()))})")


def is_batch_job(job_id: uuid.UUID | str) -> bool:
    """Whether the job runs in batch mode (its parameters say so, or it has batches)."""
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        if (job.parameters or {}).get("batch"):
            return True
        return session.scalar(select(LLMBatch.id).where(LLMBatch.job_id == job.id).limit(1)) \
            is not None


def mark_batch_job(job_id: uuid.UUID | str) -> None:
    """Record on the job that it runs in batch mode (a flow given ``batch=True``)."""
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        job.parameters = {**(job.parameters or {}), "batch": True}


def batch_state(job_id: uuid.UUID | str) -> BatchState:
    """The job's batches as stored (no call to the provider)."""
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        rows = list(session.scalars(select(LLMBatch).where(LLMBatch.job_id == job.id)))
        state = BatchState(job_id=str(job.id), done=job.status is not JobStatus.PROCESSING)
    for row in rows:
        state.batches += 1
        state.lines_total += row.lines_total
        state.lines_done += row.lines_completed + row.lines_failed
        state.statuses[row.status] = state.statuses.get(row.status, 0) + 1
        if row.collected_at is None:
            state.waiting += 1
    return state


def jobs_waiting() -> list[str]:
    """Ids of PROCESSING jobs with batches not collected yet (what the schedule collects)."""
    with session_scope() as session:
        ids = session.scalars(
            select(LLMBatch.job_id).join(ProcessingJob, ProcessingJob.id == LLMBatch.job_id)
            .where(LLMBatch.collected_at.is_(None),
                   ProcessingJob.status == JobStatus.PROCESSING).distinct())
        return [str(i) for i in ids]


def _context(job_id: uuid.UUID | str, settings: Settings, api: BatchAPI | None) -> BatchContext:
    from extraction.llm.client import LLMClient

    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        plan = load_plan(session, job)
    semaphore = asyncio.Semaphore(settings.llm_concurrency)  # fallbacks and re-asks only
    llm = LLMClient.from_settings(settings, model=plan.model or None,
                                  limiter=lambda: semaphore)
    return BatchContext(plan=plan, settings=settings, llm=llm,
                        api=api or BatchAPI.from_settings(settings))


def advance(job_id: uuid.UUID | str, settings: Settings | None = None, *,
            api: BatchAPI | None = None) -> BatchState:
    """One step of a batch job: submit, collect what finished, resubmit failures once.

    Blocking (call it from a worker thread in async code). Does not finish the job: when
    the state is ``done`` the caller finalises it (the flow's aggregate task, or
    :func:`extraction.run.summary.finalize_job`).

    Raises:
        ConfigError: The provider has no Batch API (HTTP 404 on /files or /batches).
        LLMError: The provider refused a call (credentials, a rejected request).
        FatalRunError: A synchronous fallback hit a fatal error.
    """
    settings = settings or get_settings()
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        status, job_uuid = job.status, job.id
    if status is JobStatus.CANCELLED:
        cancel_batches(job_uuid, settings, api=api)
        return batch_state(job_uuid)
    if status is not JobStatus.PROCESSING:
        return batch_state(job_uuid)
    ctx = _context(job_uuid, settings, api)

    async def step() -> tuple[int, int]:
        try:
            fresh = await submit_new_documents(ctx)
            made = await finish_submissions(ctx, fresh)
            collected = await collect_ready(ctx)
            made += await finish_submissions(ctx, {})  # retry batches made while collecting
            return made, collected
        finally:
            await ctx.llm.aclose()

    try:
        made, collected = asyncio.run(step())
    finally:
        if api is None:
            ctx.api.close()
    state = batch_state(job_uuid)
    state.submitted_now, state.collected_now = made, collected
    state.done = state.waiting == 0
    return state


def cancel_batches(job_id: uuid.UUID | str, settings: Settings | None = None, *,
                   api: BatchAPI | None = None) -> int:
    """Cancel the job's provider batches that are still running; returns how many.

    Batches not collected are marked collected (nothing more is stored for a cancelled
    job); a provider that cannot be reached is logged, not raised — the job is cancelled
    either way, and the next step tries again only if rows are left.
    """
    settings = settings or get_settings()
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        job_uuid = job.id
        rows = list(session.scalars(select(LLMBatch).where(
            LLMBatch.job_id == job.id, LLMBatch.collected_at.is_(None))))
        session.expunge_all()
    if not rows:
        return 0
    client = api or BatchAPI.from_settings(settings)
    cancelled = 0
    problems: list[str] = []
    try:
        for row in rows:
            status: Any = row.status
            if row.provider_batch_id and row.status not in TERMINAL_STATUSES:
                try:
                    status = client.cancel(row.provider_batch_id).status
                    cancelled += 1
                except ExtractflowError as exc:
                    problems.append(f"batch {row.provider_batch_id}: {exc.detail}")
                    continue
            with session_scope() as session:
                stored = session.get(LLMBatch, row.id)
                assert stored is not None
                stored.status, stored.collected_at = str(status), utcnow()
                stored.error = stored.error or "job cancelled"
    finally:
        if api is None:
            client.close()
    with session_scope() as session:
        progress.log_event(session, job_uuid, "batches_cancelled",
                           f"{cancelled} provider batches cancelled with the job"
                           + (f"; could not cancel: {'; '.join(problems)}" if problems else ""),
                           level=LogLevel.WARNING if problems else LogLevel.INFO)
    return cancelled
