"""What a run tells the people watching it: its plan, its progress, its failures, a preview.

Plain functions over a session (no Prefect): the flows turn these into log lines and
artifacts of the flow run, so the Prefect UI shows the run in extractflow's own words, and
tests check them without a server.

* :func:`plan_line` and :func:`progress_line` — one sentence each, for the run's log.
* :func:`new_events` — the job's event log entries written since the last look (failed
  documents with their reason, cancellations, the final summary), to relay to the run's log.
* :func:`preview_rows` — the first documents' values with confidence and a short quote.
* :func:`failed_rows` — the documents that failed, and why (never the document's text).
* :func:`results_command` — the CLI command that prints the job's results.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from extraction.models import (
    Document,
    Extraction,
    ExtractionStatus,
    JobKind,
    LogLevel,
    ProcessingJob,
    ProcessingLog,
    Variable,
)

__all__ = [
    "EventCursor",
    "failed_rows",
    "flow_parameters",
    "new_events",
    "plan_line",
    "preview_rows",
    "progress_line",
    "results_command",
    "run_label",
    "run_tags",
]

#: Events already said elsewhere in the run's log (the plan and progress lines).
_RELAYED_ELSEWHERE = frozenset({"job_started", "job_resumed"})
_QUOTE_CHARS = 80


def run_label(project: str, kind: JobKind | str, job_id: uuid.UUID | str | None) -> str:
    """``<project>/<kind>-<job id 8>``: the flow run's name, the same wherever it started.

    A run that failed before it had a job is ``<project>/<kind>-no-job``.
    """
    kind_name = "sample" if JobKind(kind) is JobKind.SAMPLE else "full"
    return f"{project}/{kind_name}-{str(job_id)[:8] if job_id else 'no-job'}"


def flow_parameters(job: ProcessingJob) -> dict[str, Any]:
    """The parameters of the flow run as they really ran: the job's recorded choices
    (documents, sample size and seed, filter), its resolved mode and model, and the job id
    (so Prefect's Retry of the run resumes this job)."""
    recorded = dict(job.parameters or {})
    params: dict[str, Any] = {"project": job.project.name}
    if job.kind is JobKind.SAMPLE:
        if recorded.get("document_ids"):
            params["document_ids"] = list(recorded["document_ids"])
            params["n"] = len(params["document_ids"])
        else:
            params["n"] = recorded.get("n")
            params["seed"] = recorded.get("seed")
    elif recorded.get("document_filter"):
        params["document_filter"] = recorded["document_filter"]
    params.update(mode=job.mode, model=job.model, job_id=str(job.id))
    return params


def run_tags(kind: JobKind | str, project: str, job_id: uuid.UUID | str | None) -> list[str]:
    """The flow run's tags: ``project:<name>``, ``kind:<sample|full>`` and ``job:<id>``."""
    kind_name = "sample" if JobKind(kind) is JobKind.SAMPLE else "full"
    tags = ["extractflow", kind_name, f"project:{project}", f"kind:{kind_name}"]
    return [*tags, f"job:{job_id}"] if job_id else tags


def results_command(job_id: uuid.UUID | str) -> str:
    return f"extractflow job results {str(job_id)[:8]}"


def plan_line(session: Session, job: ProcessingJob) -> str:
    """The run's plan in one sentence: documents, sample seed, prompt versions, model, mode."""
    params = job.parameters or {}
    if job.kind is JobKind.SAMPLE and params.get("seed") is not None:
        drawn = f"a sample of {job.documents_total} (n={params.get('n')}, seed {params['seed']})"
    elif params.get("document_ids"):
        drawn = f"{job.documents_total} chosen documents"
    else:
        drawn = f"{job.documents_total} documents"
        if params.get("document_filter"):
            drawn += f" matching {params['document_filter']!r}"
    versions = ", ".join(f"{v['variable']} v{v['prompt_version']}"
                         for v in (job.prompt_snapshot or {}).get("variables", []))
    return (f"plan: {drawn} of project {job.project.name} · mode {job.mode} · model "
            f"{job.model} · prompts {versions or '(not snapshotted yet)'}")


def progress_line(job: ProcessingJob) -> str:
    """Where the run stands, for the log after each chunk."""
    done = job.documents_completed + job.documents_failed
    return (f"progress: {done}/{job.documents_total} documents ({job.progress or 0:.0f}%), "
            f"{job.documents_failed} failed, {job.llm_calls} LLM calls, "
            f"{job.cells_reused} cells re-used")


@dataclass
class EventCursor:
    """Where :func:`new_events` stopped: entries at the cursor's time are told only once."""

    after: datetime | None = None
    seen: set[uuid.UUID] = field(default_factory=set)


def new_events(session: Session, job_id: uuid.UUID, cursor: EventCursor,
               limit: int = 200) -> list[tuple[LogLevel, str]]:
    """The job's log entries written since ``cursor`` (which is advanced), oldest first."""
    query = select(ProcessingLog).where(ProcessingLog.job_id == job_id)
    if cursor.after is not None:
        query = query.where(ProcessingLog.created_at >= cursor.after)
    rows = session.scalars(query.order_by(ProcessingLog.created_at).limit(limit)).all()
    out: list[tuple[LogLevel, str]] = []
    for row in rows:
        if row.id in cursor.seen:
            continue
        if row.created_at != cursor.after:
            cursor.seen = set()
        cursor.after = row.created_at
        cursor.seen.add(row.id)
        if row.event not in _RELAYED_ELSEWHERE:
            out.append((row.level, f"{row.event}: {row.message}" if row.message else row.event))
    return out


def _short(text: str | None, limit: int = _QUOTE_CHARS) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def preview_rows(session: Session, job: ProcessingJob, *, documents: int = 10
                 ) -> list[dict[str, Any]]:
    """One row per cell of the job's first ``documents`` documents (by filename), in
    codebook order: the value, its confidence and the start of its evidence quote."""
    E = Extraction
    first = select(Document.id).join(E, E.document_id == Document.id).where(
        E.job_id == job.id).group_by(Document.id, Document.filename).order_by(
        Document.filename, Document.id).limit(documents)
    ids = list(session.scalars(first))
    if not ids:
        return []
    rows = session.execute(
        select(Document.filename, Variable.name, E.status, E.value, E.confidence,
               E.evidence_quote, E.error)
        .join(Document, Document.id == E.document_id)
        .join(Variable, Variable.id == E.variable_id)
        .where(E.job_id == job.id, E.document_id.in_(ids))
        .order_by(Document.filename, Document.id, Variable.position, Variable.name)
    )
    out = []
    for filename, variable, status, value, confidence, quote, error in rows:
        status = ExtractionStatus(status)
        out.append({
            "document": filename,
            "variable": variable,
            "value": _value(value) if status is ExtractionStatus.OK else f"({status.value})",
            "confidence": None if confidence is None else round(float(confidence), 2),
            "quote": _short(quote) if status is ExtractionStatus.OK else _short(error),
        })
    return out


def failed_rows(session: Session, job: ProcessingJob, *, limit: int = 50
                ) -> list[dict[str, Any]]:
    """The job's failures, one row per logged failure: document, variables and the reason."""
    entries = session.scalars(
        select(ProcessingLog)
        .where(ProcessingLog.job_id == job.id, ProcessingLog.level == LogLevel.ERROR,
               ProcessingLog.document_id.is_not(None))
        .order_by(ProcessingLog.created_at).limit(limit)
    ).all()
    return [{
        "document": (e.details or {}).get("filename") or str(e.document_id),
        "variables": ", ".join((e.details or {}).get("variables") or []),
        "reason": _short((e.details or {}).get("error") or e.message, 200),
    } for e in entries]
