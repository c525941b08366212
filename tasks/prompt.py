"""The prompt task: snapshot the current prompt version of each variable on the job."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from extraction.db import session_scope
from extraction.run import jobs
from extraction.run.plan import snapshot_prompts

__all__ = ["prompt"]


def _snapshot(job_id: uuid.UUID) -> dict[str, Any]:
    with session_scope() as session:
        return snapshot_prompts(session, jobs.get_job(session, job_id))


@task(name="prompt", cache_policy=NO_CACHE)
async def prompt(job_id: uuid.UUID) -> dict[str, Any]:
    """Resolve and snapshot the prompt versions the job runs with (a resumed job keeps its own)."""
    return await asyncio.to_thread(_snapshot, job_id)
