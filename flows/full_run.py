"""The ``full-run`` flow: extract every document of a project, resumably."""

from __future__ import annotations

from typing import Any, Literal

from prefect.states import State

from extraction.models import JobKind
from flows._run import on_flow_cancelled, on_flow_crashed, run_job
from flows.entry import entry_flow

__all__ = ["full_run"]


@entry_flow(
    llm_stack=True,
    name="full-run",
    on_cancellation=[on_flow_cancelled],
    on_crashed=[on_flow_crashed],
    log_prints=False,
)
async def full_run(
    project: str,
    mode: Literal["per_document", "per_variable"] | None = None,
    model: str | None = None,
    document_filter: str | None = None,
    job_id: str | None = None,
    force: bool = False,
    llm_concurrency: int | None = None,
    documents_per_chunk: int | None = None,
    chunks_in_flight: int | None = None,
    stop_after_unreachable_documents: int | None = None,
    batch: bool = False,
) -> dict[str, Any] | State:
    """Extract every variable of a project from all its documents.

    DAG: parse → prompt → extract (one task per ``documents_per_chunk`` documents,
    async LLM calls inside a chunk) → aggregate. Cells already extracted with the same
    document content, prompt version and model are re-used, not re-asked, so re-running an
    unchanged project makes no LLM call.

    Args:
        project: Project name or id.
        mode: ``per_document`` or ``per_variable``; default from the project, else settings.
        model: LLM model; default from the project, else EXTRACTFLOW_LLM_MODEL.
        document_filter: Only documents whose filename matches this glob (e.g. ``2024-*.pdf``).
        job_id: Run this existing job, or resume an interrupted one (``extractflow run
            resume``); its documents and prompt versions are the ones it started with.
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
        batch: Send the requests through the provider's Batch API (about half the price,
            answers within 24 h): the run submits them and ends waiting; the
            ``collect-batches`` deployment (or ``extractflow run collect``) stores the answers.
    """
    params = {"project": project, "mode": mode, "model": model,
              "filename_glob": document_filter}
    return await run_job(JobKind.FULL, params, job_id=job_id, force=force,
                         knobs={"llm_concurrency": llm_concurrency,
                                "documents_per_chunk": documents_per_chunk,
                                "chunks_in_flight": chunks_in_flight,
                                "stop_after_unreachable": stop_after_unreachable_documents},
                         batch=batch)
