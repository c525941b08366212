"""The ``full-run`` flow: extract every document of a project, resumably."""

from __future__ import annotations

from typing import Any

from prefect.states import State

from extraction.models import JobKind
from flows._run import on_flow_cancelled, on_flow_crashed, run_job
from flows.entry import entry_flow
from flows.parameters import (
    ChunkSize,
    Concurrency,
    InFlight,
    JobRef,
    MaxCost,
    Mode,
    ModelName,
    ProjectRef,
    Shards,
    ShardSize,
    StopAfter,
    split_arguments,
)

__all__ = ["full_run"]


@entry_flow(
    llm_stack=True,
    name="full-run",
    on_cancellation=[on_flow_cancelled],
    on_crashed=[on_flow_crashed],
    log_prints=False,
)
async def full_run(
    project: ProjectRef,
    mode: Mode = "default",
    model: ModelName = None,
    document_filter: str | None = None,
    llm_concurrency: Concurrency = None,
    documents_per_chunk: ChunkSize = None,
    chunks_in_flight: InFlight = None,
    stop_after_unreachable_documents: StopAfter = None,
    max_cost_usd: MaxCost = None,
    shards: Shards = None,
    shard_size: ShardSize = None,
    batch: bool = False,
    job_id: JobRef = None,
    force: bool = False,
) -> dict[str, Any] | State:
    """Extract every variable of a project from all its documents.

    DAG: parse → prompt → extract (one task per ``documents_per_chunk`` documents,
    async LLM calls inside a chunk) → aggregate. Cells already extracted with the same
    document content, prompt version and model are re-used, not re-asked, so re-running an
    unchanged project makes no LLM call.

    Args:
        project: Project name or id.
        mode: ``per_document`` (one LLM call per document) or ``per_variable``; ``default``:
            the project's setting, else EXTRACTFLOW_EXTRACTION_MODE.
        model: LLM model; default from the project, else EXTRACTFLOW_LLM_MODEL.
        document_filter: Only documents whose filename matches this glob (e.g. ``2024-*.pdf``).
        llm_concurrency: LLM calls in flight in this run's process, and the slots of the
            global limit it asks for. Default: EXTRACTFLOW_LLM_CONCURRENCY.
        documents_per_chunk: Documents per extract task run (and per database write).
            Default: EXTRACTFLOW_DOCUMENTS_PER_CHUNK.
        chunks_in_flight: Chunks in progress at the same time. Default:
            EXTRACTFLOW_CHUNKS_IN_FLIGHT.
        stop_after_unreachable_documents: Fail the run when this many documents in a row
            could not reach the LLM server; 0 never. Default:
            EXTRACTFLOW_STOP_AFTER_UNREACHABLE_DOCUMENTS.
        max_cost_usd: Budget cap in US dollars: no new LLM call once spent + in flight
            would pass it; the job ends CANCELLED "budget reached". Default: the job's own
            cap (``--max-cost``), else EXTRACTFLOW_MAX_COST_USD.
        shards: Split the documents left into this many shards, each a child flow run of
            the ``full-run-shard`` deployment that any worker of its pool takes; the job
            stays one job with one summary. Without a Prefect server and that deployment
            the run goes on in this process (the job's log says so).
        shard_size: Instead of ``shards``: this many documents per shard.
        batch: Send the requests through the provider's Batch API (about half the price,
            answers within 24 h): the run submits them and ends waiting; the
            ``collect-batches`` deployment (or ``extractflow run collect``) stores the answers.
        job_id: Advanced — resume this job instead of starting one (what ``extractflow run
            resume`` and Prefect's Retry do); its documents and prompt versions are the ones
            it started with. Leave empty to start a new run.
        force: Advanced — resume ``job_id`` even if it looks like it is still running.
    """
    plan, resume, knobs = split_arguments(locals())  # every parameter above, by name
    return await run_job(JobKind.FULL, plan, **resume, knobs=knobs)
