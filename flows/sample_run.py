"""The ``sample-run`` flow: extract a small, reproducible sample to check the prompts."""

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
    SampleSize,
    Seed,
    StopAfter,
    split_arguments,
)

__all__ = ["sample_run"]


@entry_flow(
    llm_stack=True,
    name="sample-run",
    on_cancellation=[on_flow_cancelled],
    on_crashed=[on_flow_crashed],
    log_prints=False,
)
async def sample_run(
    project: ProjectRef,
    n: SampleSize = 10,
    seed: Seed = None,
    mode: Mode = "default",
    model: ModelName = None,
    document_ids: list[str] | None = None,
    llm_concurrency: Concurrency = None,
    documents_per_chunk: ChunkSize = None,
    chunks_in_flight: InFlight = None,
    stop_after_unreachable_documents: StopAfter = None,
    max_cost_usd: MaxCost = None,
    job_id: JobRef = None,
    force: bool = False,
) -> dict[str, Any] | State:
    """Extract every variable of a project from a sample of its documents.

    DAG: parse (documents not parsed yet) → prompt (snapshot the current prompt versions) →
    extract (one task per chunk of documents) → aggregate (totals, per-variable figures).

    Args:
        project: Project name or id.
        n: Sample size; documents are drawn at random with ``seed``.
        document_ids: Exactly these documents instead of a random sample.
        seed: Seed of the sample (the same seed gives the same documents); one is chosen and
            recorded on the job when omitted.
        mode: ``per_document`` (one LLM call returns every variable) or ``per_variable`` (one
            call per variable); ``default``: the project's setting, else
            EXTRACTFLOW_EXTRACTION_MODE.
        model: LLM model. Default: the project's setting, else EXTRACTFLOW_LLM_MODEL.
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
        job_id: Advanced — resume this job instead of starting one (what ``extractflow run
            resume`` and Prefect's Retry do); leave empty to start a new run.
        force: Advanced — resume ``job_id`` even if it looks like it is still running.
    """
    plan, resume, knobs = split_arguments(locals())  # every parameter above, by name
    return await run_job(JobKind.SAMPLE, plan, **resume, knobs=knobs)
