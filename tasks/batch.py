"""The batch task: one step of a batch-mode job (submit, collect what finished), thin wrapper."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from extraction.db import session_scope
from extraction.run import batch, jobs, views

__all__ = ["batch_step", "job_dict", "waiting_jobs"]


def _step(job_id: uuid.UUID, mark: bool) -> dict[str, Any]:
    if mark:
        batch.mark_batch_job(job_id)
    state = batch.advance(job_id)
    return {**dataclasses.asdict(state), "message": state.describe()}


@task(name="batch-step", cache_policy=NO_CACHE)
async def batch_step(job_id: uuid.UUID, mark: bool = False) -> dict[str, Any]:
    """Submit the job's requests not yet submitted and collect the batches that finished."""
    return await asyncio.to_thread(_step, job_id, mark)


def _job_dict(job_id: uuid.UUID | str) -> dict[str, Any]:
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        return views.job_to_dict(job, project_name=job.project.name)


async def job_dict(job_id: uuid.UUID | str) -> dict[str, Any]:
    """The job as a dict (what a flow returns while its batches are being processed)."""
    return await asyncio.to_thread(_job_dict, job_id)


async def waiting_jobs() -> list[str]:
    """Jobs with provider batches still to collect."""
    return await asyncio.to_thread(batch.jobs_waiting)
