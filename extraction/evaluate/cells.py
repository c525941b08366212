"""The extracted values to evaluate, chosen by the rule exports use.

Evaluation must judge the values a user would export, so the selection is the one of
:mod:`extraction.export.query`: with a job, that job's extractions; without, per document ×
variable the newest *successful* extraction (ok or not_found) of the COMPLETE jobs that have a
row for that cell (newest by ``finished_at``, then ``created_at``, then id); only a cell no job
answered is taken with its newest failure. The query is our own
rather than the export's DuckDB load: evaluation needs the raw JSON value and none of the
export's typed columns, and building those cost more than the rest of an evaluation. A test
checks that both select the same rows.

Rows are streamed in their raw database form (ids as text, the value as JSON text) a batch at
a time and kept as one small :class:`ExtractedCell` per cell.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, String, Text, case, cast, func, select, type_coerce
from sqlalchemy.orm import Session

from extraction import codebook
from extraction.errors import NotFoundError, StateError
from extraction.models import (
    Document,
    Extraction,
    ExtractionStatus,
    JobStatus,
    ProcessingJob,
    Project,
    Prompt,
)

__all__ = ["BATCH_SIZE", "Extracted", "ExtractedCell", "canonical_id", "load_extracted"]

#: Rows fetched per round trip.
BATCH_SIZE = 5000


@dataclass(slots=True)
class ExtractedCell:
    """One stored extraction, as evaluation needs it."""

    value: Any
    status: str
    confidence: float | None
    prompt_version: int | None
    model: str | None
    job_id: str
    filename: str

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass
class Extracted:
    """The selected cells by ``(document id, variable name)``, and the jobs they came from."""

    cells: dict[tuple[str, str], ExtractedCell]
    jobs: list[dict[str, Any]]


def _selected(project: Project, variable_ids: list[uuid.UUID],
              job_id: uuid.UUID | None) -> Select[Any]:
    """The ids of the selected extractions (see the module docstring)."""
    if job_id is not None:
        return select(Extraction.id).where(Extraction.job_id == job_id,
                                           Extraction.variable_id.in_(variable_ids))
    newest_first = (
        func.coalesce(ProcessingJob.finished_at, ProcessingJob.created_at).desc(),
        ProcessingJob.created_at.desc(),
        ProcessingJob.id.desc(),
    )
    failed_last = case((Extraction.status == ExtractionStatus.FAILED, 1), else_=0)
    ranked = (
        select(Extraction.id.label("id"), func.row_number().over(
            partition_by=(Extraction.document_id, Extraction.variable_id),
            order_by=(failed_last, *newest_first)).label("rank"))
        .join(ProcessingJob, ProcessingJob.id == Extraction.job_id)
        .where(ProcessingJob.project_id == project.id,
               ProcessingJob.status == JobStatus.COMPLETE,
               Extraction.variable_id.in_(variable_ids))
        .subquery("ranked")
    )
    return select(ranked.c.id).where(ranked.c.rank == 1)


def canonical_id(text: str) -> str:
    """An id in canonical form: SQLite gives 32 hex digits, PostgreSQL the canonical text.

    Sliced rather than parsed: ``uuid.UUID`` per cell was a tenth of an evaluation's time.
    """
    if len(text) == 36:
        return text.lower()
    text = text.lower()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _job_summaries(session: Session, used: dict[str, int]) -> list[dict[str, Any]]:
    """The jobs whose cells were evaluated, newest first, with what the report states."""
    rows = session.scalars(select(ProcessingJob).where(
        ProcessingJob.id.in_([uuid.UUID(j) for j in used]))).all()
    rows = sorted(rows, key=lambda j: str(j.finished_at or j.created_at), reverse=True)
    return [{
        "job_id": str(job.id), "kind": job.kind.value, "status": job.status.value,
        "model": job.model, "mode": job.mode, "started_at": job.started_at,
        "finished_at": job.finished_at, "documents_total": job.documents_total,
        "documents_completed": job.documents_completed,
        "documents_failed": job.documents_failed, "llm_calls": job.llm_calls,
        "tokens_in": job.tokens_in, "tokens_out": job.tokens_out, "cost_usd": job.cost_usd,
        "cells_exported": used[str(job.id)],
    } for job in rows]


def load_extracted(session: Session, project: Project, *,
                   job_id: uuid.UUID | None = None) -> Extracted:
    """The project's selected extractions (see the module docstring).

    Raises:
        NotFoundError: ``job_id`` is not a job of the project.
        StateError: nothing to evaluate (no COMPLETE job, or an empty job).
    """
    if job_id is not None:
        job = session.get(ProcessingJob, job_id)
        if job is None or job.project_id != project.id:
            raise NotFoundError(f"project '{project.name}' has no job {job_id}",
                                field="job_id", instance=str(job_id))
    variables = codebook.list_variables(session, project)
    names = {}
    for v in variables:
        names[v.id.hex] = names[str(v.id)] = v.name
    selected = _selected(project, [v.id for v in variables], job_id).subquery("selected")
    statement = (
        select(cast(Extraction.document_id, String), cast(Extraction.variable_id, String),
               cast(Extraction.value, Text), type_coerce(Extraction.status, String),
               Extraction.confidence, Prompt.version, Extraction.model,
               cast(Extraction.job_id, String), Document.filename)
        .select_from(Extraction)
        .join(selected, selected.c.id == Extraction.id)
        .join(Document, Document.id == Extraction.document_id)
        .outerjoin(Prompt, Prompt.id == Extraction.prompt_id)
    )
    cells: dict[tuple[str, str], ExtractedCell] = {}
    used: dict[str, int] = {}
    loads = json.loads
    # One string object per distinct id, status, model and file name instead of one per
    # row: a document's eight cells share them, which keeps memory per cell small.
    shared: dict[str, str] = {}
    documents: dict[str, str] = {}
    result = session.connection().execute(statement.execution_options(yield_per=BATCH_SIZE))
    try:
        for partition in result.partitions():
            for doc, var, raw, status, confidence, version, model, job, filename in partition:
                job = shared.get(job) or shared.setdefault(job, canonical_id(job))
                used[job] = used.get(job, 0) + 1
                document = documents.get(doc)
                if document is None:
                    document = documents[doc] = canonical_id(doc)
                cells[(document, names[var])] = ExtractedCell(
                    None if raw is None else loads(raw), shared.setdefault(status, status),
                    confidence, version,
                    model if model is None else shared.setdefault(model, model), job,
                    shared.setdefault(filename, filename))
    finally:
        result.close()
    if not cells:
        if job_id is not None:
            raise StateError(f"job {job_id} has no extractions of the current variables",
                             field="job_id", instance=str(job_id))
        raise StateError(f"project '{project.name}' has no COMPLETE job with extractions yet: "
                         "run the project first, or evaluate a given job with --job",
                         instance=project.name)
    return Extracted(cells=cells, jobs=_job_summaries(session, used))
