"""The ``sample-run`` flow: extract a small, reproducible sample to check the prompts."""

from __future__ import annotations

from typing import Any, Literal

from prefect.states import State

from extraction.models import JobKind
from flows._run import on_flow_cancelled, on_flow_crashed, run_job
from flows.entry import entry_flow

__all__ = ["sample_run"]


@entry_flow(
    llm_stack=True,
    name="sample-run",
    on_cancellation=[on_flow_cancelled],
    on_crashed=[on_flow_crashed],
    log_prints=False,
)
async def sample_run(
    project: str,
    n: int = 10,
    document_ids: list[str] | None = None,
    seed: int | None = None,
    mode: Literal["per_document", "per_variable"] | None = None,
    model: str | None = None,
    job_id: str | None = None,
    force: bool = False,
    llm_concurrency: int | None = None,
    documents_per_chunk: int | None = None,
    chunks_in_flight: int | None = None,
    stop_after_unreachable_documents: int | None = None,
    max_cost_usd: float | None = None,
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
            call per variable). Default: the project's setting, else EXTRACTFLOW_EXTRACTION_MODE.
        model: LLM model. Default: the project's setting, else EXTRACTFLOW_LLM_MODEL.
        job_id: Run this existing job (the CLI creates it first) or resume an interrupted one.
        force: Resume ``job_id`` even if it looks like it is still running.
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
    """
    params = {"project": project, "n": n, "document_ids": document_ids, "seed": seed,
              "mode": mode, "model": model}
    return await run_job(JobKind.SAMPLE, params, job_id=job_id, force=force,
                         knobs={"llm_concurrency": llm_concurrency,
                                "documents_per_chunk": documents_per_chunk,
                                "chunks_in_flight": chunks_in_flight,
                                "stop_after_unreachable": stop_after_unreachable_documents,
                                "max_cost_usd": max_cost_usd})
