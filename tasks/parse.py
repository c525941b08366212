"""The parse task: parse the job's documents that are not parsed yet (thin wrapper)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from config.settings import get_settings
from extraction.db import session_scope
from extraction.run import jobs
from extraction.run.plan import parse_job_documents

__all__ = ["parse"]


def _parse(job_id: uuid.UUID) -> dict[str, Any]:
    settings = get_settings()
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        outcome = parse_job_documents(session, job, max_bytes=settings.max_file_bytes)
    return {"parsed": outcome.parsed, "usable": outcome.usable, "unusable": outcome.unusable}


@task(name="parse", cache_policy=NO_CACHE)
async def parse(job_id: uuid.UUID) -> dict[str, Any]:
    """Parse the job's not-yet-parsed documents; unusable ones are logged and counted failed."""
    return await asyncio.to_thread(_parse, job_id)
