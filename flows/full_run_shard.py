"""The ``full-run-shard`` flow: one shard of a sharded full run, on whichever worker takes it.

Started by the parent ``full-run`` (``shards=N``) with ``run_deployment``, never by hand: the
parent planned the shard's documents, retries the shard if it crashes and finishes the job.
"""

from __future__ import annotations

from typing import Any

from prefect.states import State

from flows._shards import run_shard
from flows.entry import entry_flow

__all__ = ["full_run_shard"]


@entry_flow(llm_stack=True, name="full-run-shard", log_prints=False)
async def full_run_shard(
    job_id: str,
    shard: int,
    llm_concurrency: int | None = None,
    documents_per_chunk: int | None = None,
    chunks_in_flight: int | None = None,
    stop_after_unreachable_documents: int | None = None,
) -> dict[str, Any] | State:
    """Extract the documents of one shard of a full-run job that are not written yet.

    Args:
        job_id: The sharded job (its parent full-run planned the shards).
        shard: The shard's number in the job.
        llm_concurrency: LLM calls in flight in this shard, and the slots of the global
            limit it asks for. Default: EXTRACTFLOW_LLM_CONCURRENCY.
        documents_per_chunk: Documents per extract task run (and per database write).
        chunks_in_flight: Chunks in progress at the same time.
        stop_after_unreachable_documents: Fail the shard after this many documents in a row
            could not reach the LLM server; 0 never.
    """
    return await run_shard(job_id, shard, {
        "llm_concurrency": llm_concurrency, "documents_per_chunk": documents_per_chunk,
        "chunks_in_flight": chunks_in_flight,
        "stop_after_unreachable": stop_after_unreachable_documents})
