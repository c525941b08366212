"""The extract task: one chunk of documents through the engine, inside the run's slot lease.

One task run per chunk (``documents_per_chunk`` documents), so 10,000 documents make about
200 task runs; inside a chunk the LLM calls are async, up to the in-process limit. The
runner and the lease are shared, in-process objects of the run (no caching: per-cell re-use
lives in the database, where it is cheap).
"""

from __future__ import annotations

import uuid

from prefect import task
from prefect.cache_policies import NO_CACHE

from extraction.llm.limits import SlotLease
from extraction.run.runner import ChunkOutcome, ChunkRunner
from extraction.run.scheduler import run_chunk_in_lease

__all__ = ["extract"]


@task(name="extract", cache_policy=NO_CACHE, task_run_name="extract-chunk-{index}")
async def extract(
    runner: ChunkRunner, lease: SlotLease, document_ids: list[uuid.UUID], index: int
) -> ChunkOutcome:
    """Extract and store one chunk of documents while holding the run's global slots."""
    return await run_chunk_in_lease(runner, lease, document_ids, index)
