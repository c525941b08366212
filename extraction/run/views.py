"""Read-only views of jobs: a job's results, and JSON-ready dicts for ``--json`` and flows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from extraction.errors import NotFoundError, ValidationError
from extraction.models import (
    Document,
    Extraction,
    ExtractionStatus,
    ProcessingJob,
    ProcessingLog,
    Variable,
)

__all__ = ["extraction_to_dict", "job_results", "job_to_dict", "log_to_dict"]


def job_results(
    session: Session,
    job: ProcessingJob,
    *,
    min_confidence: float | None = None,
    variable: str | None = None,
    status: ExtractionStatus | str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Extraction]:
    """The job's extractions, in document then codebook order.

    ``min_confidence`` keeps extractions whose confidence is at least the threshold (cells
    without a confidence, such as failed ones, are left out); ``variable`` is a variable
    name of the job's project.
    """
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ValidationError("min-confidence must be between 0 and 1", field="min_confidence")
    query = (
        select(Extraction)
        .join(Document, Document.id == Extraction.document_id)
        .join(Variable, Variable.id == Extraction.variable_id)
        .where(Extraction.job_id == job.id)
        .options(joinedload(Extraction.document).load_only(Document.id, Document.filename),
                 joinedload(Extraction.variable), joinedload(Extraction.prompt))
    )
    if variable is not None:
        known = session.scalar(
            select(func.count(Variable.id)).where(
                Variable.project_id == job.project_id, Variable.name == variable
            )
        )
        if not known:
            raise NotFoundError(
                f"the job's project has no variable '{variable}'",
                field="variable",
                instance=variable,
            )
        query = query.where(Variable.name == variable)
    if min_confidence is not None:
        query = query.where(Extraction.confidence >= min_confidence)
    if status is not None:
        query = query.where(Extraction.status == ExtractionStatus(status))
    query = query.order_by(Document.filename, Document.id, Variable.position, Variable.name)
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return list(session.scalars(query).unique())

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_to_dict(job: ProcessingJob, *, project_name: str | None = None) -> dict[str, Any]:
    """A JSON-ready view of a job (the document id list is summarised, not dumped)."""
    return {
        "id": str(job.id),
        "project_id": str(job.project_id),
        "project": project_name,
        "kind": job.kind.value,
        "status": job.status.value,
        "mode": job.mode,
        "model": job.model,
        "documents_total": job.documents_total,
        "documents_completed": job.documents_completed,
        "documents_failed": job.documents_failed,
        "progress": round(job.progress or 0.0, 2),
        "llm_calls": job.llm_calls,
        "cells_reused": job.cells_reused,
        "tokens_in": job.tokens_in,
        "tokens_out": job.tokens_out,
        "tokens_cached": job.tokens_cached or 0,
        "cost_usd": job.cost_usd,
        "flow_run_id": job.flow_run_id,
        "prompt_snapshot": job.prompt_snapshot or {},
        "parameters": job.parameters or {},
        "summary": job.summary or {},
        "error": job.error,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def extraction_to_dict(extraction: Extraction) -> dict[str, Any]:
    """One extraction as the results endpoint gives it: document, variable, typed value, proof."""
    prompt = extraction.prompt
    return {
        "id": str(extraction.id),
        "document_id": str(extraction.document_id),
        "filename": extraction.document.filename if extraction.document else None,
        "variable_id": str(extraction.variable_id),
        "variable": extraction.variable.name if extraction.variable else None,
        "value": extraction.value,
        "status": extraction.status.value,
        "confidence": extraction.confidence,
        "self_confidence": extraction.self_confidence,
        "evidence": extraction.evidence_quote,
        "evidence_start": extraction.evidence_start,
        "evidence_end": extraction.evidence_end,
        "page": extraction.evidence_page,
        "grounded": extraction.grounded,
        "support": extraction.support,
        "support_reason": extraction.support_reason,
        "agreement": extraction.agreement,
        "opinion": extraction.opinion,
        "opinion_reason": extraction.opinion_reason,
        "prompt_id": str(extraction.prompt_id) if extraction.prompt_id else None,
        "prompt_version": prompt.version if prompt is not None else None,
        "model": extraction.model,
        "error": extraction.error,
        "attempts": extraction.attempts,
        "tokens_in": extraction.tokens_in,
        "tokens_out": extraction.tokens_out,
        "tokens_cached": extraction.tokens_cached or 0,
        "latency_ms": extraction.latency_ms,
        "reused_from_id": str(extraction.reused_from_id) if extraction.reused_from_id else None,
    }


def log_to_dict(entry: ProcessingLog) -> dict[str, Any]:
    """A JSON-ready view of a log entry."""
    return {
        "id": str(entry.id),
        "created_at": _iso(entry.created_at),
        "level": entry.level.value,
        "event": entry.event,
        "message": entry.message,
        "document_id": str(entry.document_id) if entry.document_id else None,
        "variable_id": str(entry.variable_id) if entry.variable_id else None,
        "details": entry.details or {},
    }
