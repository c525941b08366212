"""The rows a run writes: extraction rows (extracted or re-used cells) and their log entries.

Plain dicts for one Core ``executemany`` per batch: :class:`~extraction.run.runner.ChunkRunner`
writes them in the transaction that also moves the job's counters.
"""

from __future__ import annotations

import uuid
from typing import Any

from extraction.models import Extraction, LogLevel, utcnow
from extraction.run.plan import RunPlan
from extraction.run.results import CellResult, DocumentInput

__all__ = ["COPIED_FIELDS", "base_row", "cell_row", "copied_row", "failure_logs", "opinion_log"]

#: What a re-used cell copies from the cell it re-uses.
COPIED_FIELDS = (
    "value", "raw_answer", "confidence", "self_confidence", "evidence_quote", "evidence_start",
    "evidence_end", "evidence_page", "grounded", "support", "support_reason", "status",
    "agreement", "opinion", "opinion_reason",
)


def copied_row(plan: RunPlan, source: Extraction, document_id: uuid.UUID,
               variable_id: uuid.UUID) -> dict[str, Any]:
    """A re-used cell: ``source``'s answer, written again for this job (no LLM call)."""
    row = base_row(plan, document_id, variable_id, source.prompt_id)
    row.update({name: getattr(source, name) for name in COPIED_FIELDS})
    row.update(attempts=0, reused_from_id=source.id)
    return row


def base_row(plan: RunPlan, document_id: uuid.UUID, variable_id: uuid.UUID,
             prompt_id: uuid.UUID | None) -> dict[str, Any]:
    """Every column of an extraction row, empty: the rows of one insert share their keys."""
    return {
        "id": uuid.uuid4(),
        "job_id": plan.job_id,
        "document_id": document_id,
        "variable_id": variable_id,
        "prompt_id": prompt_id,
        "model": plan.model,
        "value": None,
        "raw_answer": None,
        "confidence": None,
        "self_confidence": None,
        "evidence_quote": None,
        "evidence_start": None,
        "evidence_end": None,
        "evidence_page": None,
        "grounded": None,
        "support": None,
        "support_reason": None,
        "agreement": None,
        "opinion": None,
        "opinion_reason": None,
        "error": None,
        "attempts": 1,
        "tokens_in": 0,
        "tokens_out": 0,
        "tokens_cached": 0,
        "latency_ms": None,
        "reused_from_id": None,
        "created_at": utcnow(),
    }


def cell_row(plan: RunPlan, document_id: uuid.UUID, cell: CellResult) -> dict[str, Any]:
    """The row of an extracted cell."""
    prompt_id = cell.prompt_id or plan.prompts[cell.variable_id].id
    row = base_row(plan, document_id, cell.variable_id, prompt_id)
    row.update(
        value=cell.value, raw_answer=cell.raw_answer, confidence=cell.confidence,
        self_confidence=cell.self_confidence, evidence_quote=cell.evidence_quote,
        evidence_start=cell.evidence_start, evidence_end=cell.evidence_end,
        evidence_page=cell.evidence_page, grounded=cell.grounded, status=cell.status,
        support=cell.support, support_reason=cell.support_reason,
        agreement=cell.agreement, opinion=cell.opinion, opinion_reason=cell.opinion_reason,
        error=cell.error, attempts=cell.attempts, tokens_in=cell.tokens_in,
        tokens_out=cell.tokens_out, latency_ms=cell.latency_ms,
        tokens_cached=cell.tokens_cached,
    )
    return row


def failure_logs(plan: RunPlan, names: dict[uuid.UUID, str], doc: DocumentInput,
                 cells: list[CellResult]) -> list[dict[str, Any]]:
    """One ERROR entry per distinct failure of a document (a per_document call that
    failed is one failure of several variables, logged once with their names)."""
    groups: dict[str, list[CellResult]] = {}
    for cell in cells:
        groups.setdefault(cell.error or "unknown error", []).append(cell)
    entries = []
    for message, group in groups.items():
        failed = [names.get(c.variable_id, str(c.variable_id)) for c in group]
        entries.append({
            "id": uuid.uuid4(),
            "job_id": plan.job_id,
            "document_id": doc.id,
            "variable_id": group[0].variable_id if len(group) == 1 else None,
            "level": LogLevel.ERROR,
            "event": "extraction_failed",
            "message": f"{doc.filename}: {', '.join(failed)}: {message}",
            "details": {
                "filename": doc.filename,
                "variables": failed,
                "attempts": max(c.attempts for c in group),
                "error": message,
            },
            "created_at": utcnow(),
        })
    return entries


def opinion_log(plan: RunPlan, calls: int, documents: int) -> list[dict[str, Any]]:
    """One INFO entry per written batch that made second-opinion calls (``job logs``
    shows them; the job's ``llm_calls`` counts them too)."""
    if not calls:
        return []
    return [{
        "id": uuid.uuid4(), "job_id": plan.job_id, "document_id": None,
        "variable_id": None, "level": LogLevel.INFO, "event": "second_opinion_calls",
        "message": f"{calls} second-opinion LLM calls for {documents} documents",
        "details": {"calls": calls, "documents": documents},
        "created_at": utcnow(),
    }]
