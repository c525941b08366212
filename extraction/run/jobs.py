"""Processing jobs: their lifecycle, progress counters, event log, cancellation and results.

A :class:`~extraction.models.ProcessingJob` is the database side of one sample or full run.
This module is the ONE place that changes a job's status, so the lifecycle

    PENDING → PROCESSING → COMPLETE | FAILED | CANCELLED,   PENDING → CANCELLED

holds whoever asks (a flow, the CLI, a Prefect hook). Each transition is a compare-and-set
``UPDATE … WHERE status = <expected>``: a cancel from the CLI racing with a flow that is
finishing can never be overwritten, the loser gets a :class:`StateError`.

Progress counters are incremented in SQL (``x = x + :delta``) in the same transaction as the
extractions they count, so counters and rows never disagree, even after a crash or when
several chunks of a run commit at the same time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Self

from sqlalchemy import String, case, cast, func, select, update
from sqlalchemy.orm import Session, joinedload

from extraction.errors import NotFoundError, StateError, ValidationError
from extraction.models import (
    Document,
    Extraction,
    ExtractionStatus,
    JobKind,
    JobStatus,
    LogLevel,
    ProcessingJob,
    ProcessingLog,
    Project,
    Variable,
    utcnow,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "TERMINAL",
    "ProgressDelta",
    "add_progress",
    "attach_flow_run",
    "cancel_job",
    "create_job",
    "extraction_to_dict",
    "fail_job",
    "finish_job",
    "get_job",
    "is_cancelled",
    "is_stale",
    "job_logs",
    "job_results",
    "job_to_dict",
    "list_jobs",
    "log_event",
    "log_to_dict",
    "start_job",
    "touch_job",
    "transition",
]

#: The statuses a job never leaves.
TERMINAL = frozenset({JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELLED})

#: Every legal status change; anything else is refused.
ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED}),
    JobStatus.PROCESSING: frozenset(
        {JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.COMPLETE: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


@dataclass
class ProgressDelta:
    """What one committed batch of a run adds to its job's counters."""

    documents_completed: int = 0
    documents_failed: int = 0
    llm_calls: int = 0
    cells_reused: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    tokens_cached: int = 0

    def __iadd__(self, other: ProgressDelta) -> Self:
        self.documents_completed += other.documents_completed
        self.documents_failed += other.documents_failed
        self.llm_calls += other.llm_calls
        self.cells_reused += other.cells_reused
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.tokens_cached += other.tokens_cached
        if other.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + other.cost_usd
        return self


# ---------------------------------------------------------------- creation and lookup


def create_job(
    session: Session,
    project: Project,
    kind: JobKind | str,
    *,
    mode: str,
    model: str,
    document_ids: Iterable[uuid.UUID] | None = None,
    parameters: dict[str, Any] | None = None,
) -> ProcessingJob:
    """A new PENDING job of ``project``; documents may be chosen now or when it starts."""
    ids = [str(i) for i in document_ids] if document_ids is not None else None
    job = ProcessingJob(
        project_id=project.id,
        kind=JobKind(kind),
        status=JobStatus.PENDING,
        mode=mode,
        model=model,
        document_ids=ids,
        documents_total=len(ids) if ids is not None else 0,
        parameters=dict(parameters or {}),
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, ref: str | uuid.UUID) -> ProcessingJob:
    """A job by id, or by a unique prefix of at least 6 hex digits (as in flow run names).

    The short form is what ``sample-1a2b3c4d`` flow runs and CLI tables show, so people can
    paste it back.
    """
    text = str(ref).strip().lower()
    try:
        job = session.get(ProcessingJob, uuid.UUID(text))
    except ValueError:
        job = None
        prefix = text.replace("-", "")
        if len(prefix) >= 6 and all(c in "0123456789abcdef" for c in prefix):
            hex_id = func.replace(cast(ProcessingJob.id, String), "-", "")
            found = list(
                session.scalars(select(ProcessingJob).where(hex_id.like(prefix + "%")).limit(2))
            )
            if len(found) > 1:
                raise ValidationError(
                    f"job id prefix '{ref}' matches more than one job; give more digits",
                    field="job",
                )
            job = found[0] if found else None
    if job is None:
        raise NotFoundError(f"no job with id '{ref}'", instance=str(ref))
    return job


def list_jobs(
    session: Session, project: Project, *, kind: JobKind | None = None, limit: int = 50
) -> list[ProcessingJob]:
    """The project's jobs, newest first."""
    query = select(ProcessingJob).where(ProcessingJob.project_id == project.id)
    if kind is not None:
        query = query.where(ProcessingJob.kind == kind)
    return list(session.scalars(query.order_by(ProcessingJob.created_at.desc()).limit(limit)))


# ---------------------------------------------------------------- lifecycle


def transition(
    session: Session,
    job: ProcessingJob | uuid.UUID,
    to: JobStatus,
    *,
    error: str | None = None,
    expected: JobStatus | None = None,
) -> ProcessingJob:
    """Move a job to status ``to``, if the lifecycle allows it from its current status.

    The change is a compare-and-set on the current status, so two processes racing (a CLI
    cancel and a flow finishing) cannot both win. Raises :class:`StateError` for an illegal
    change, naming both statuses.
    """
    job_id = job.id if isinstance(job, ProcessingJob) else job
    current = expected or session.scalar(
        select(ProcessingJob.status).where(ProcessingJob.id == job_id)
    )
    if current is None:
        raise NotFoundError(f"no job with id '{job_id}'", instance=str(job_id))
    if to not in ALLOWED_TRANSITIONS[current]:
        raise StateError(
            f"job {job_id} cannot go from {current.value} to {to.value}",
            field="status",
            instance=str(job_id),
            extra={"from": current.value, "to": to.value},
        )
    values: dict[str, Any] = {"status": to, "updated_at": utcnow()}
    if to is JobStatus.PROCESSING:
        values["started_at"] = utcnow()
    if to in TERMINAL:
        values["finished_at"] = utcnow()
    if error is not None:
        values["error"] = error
    result = session.execute(
        update(ProcessingJob)
        .where(ProcessingJob.id == job_id, ProcessingJob.status == current)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # someone else changed it first: report what it is now
        now = session.scalar(select(ProcessingJob.status).where(ProcessingJob.id == job_id))
        raise StateError(
            f"job {job_id} is {now.value if now else 'gone'}; it cannot go to {to.value}",
            field="status",
            instance=str(job_id),
        )
    refreshed = session.get(ProcessingJob, job_id)
    assert refreshed is not None
    session.refresh(refreshed)
    return refreshed


def start_job(session: Session, job: ProcessingJob) -> ProcessingJob:
    """PENDING → PROCESSING (the run has begun)."""
    return transition(session, job, JobStatus.PROCESSING)


def finish_job(session: Session, job: ProcessingJob | uuid.UUID) -> ProcessingJob:
    """PROCESSING → COMPLETE: every document was handled (some may have failed)."""
    return transition(session, job, JobStatus.COMPLETE)


def fail_job(session: Session, job: ProcessingJob | uuid.UUID, reason: str) -> ProcessingJob:
    """→ FAILED with the reason the run could not go on (kept in ``job.error``)."""
    return transition(session, job, JobStatus.FAILED, error=reason)


def cancel_job(
    session: Session, ref: str | uuid.UUID | ProcessingJob, *, reason: str = "cancelled by user"
) -> ProcessingJob:
    """Cancel a PENDING or PROCESSING job. A running flow notices and stops new LLM calls.

    Everything already extracted is kept. Cancelling a finished job is a :class:`StateError`.
    """
    job = ref if isinstance(ref, ProcessingJob) else get_job(session, ref)
    if job.status in TERMINAL:
        raise StateError(
            f"job {job.id} is already {job.status.value}; only PENDING or PROCESSING jobs "
            "can be cancelled",
            field="status",
            instance=str(job.id),
        )
    job = transition(session, job, JobStatus.CANCELLED, error=reason)
    log_event(session, job.id, "job_cancelled", reason, level=LogLevel.WARNING)
    return job


def is_cancelled(session: Session, job_id: uuid.UUID) -> bool:
    """Whether the job was cancelled (read fresh from the database, never from the identity map)."""
    status = session.execute(
        select(ProcessingJob.status).where(ProcessingJob.id == job_id)
    ).scalar_one_or_none()
    return status is JobStatus.CANCELLED


def touch_job(session: Session, job_id: uuid.UUID) -> None:
    """Heartbeat: a running flow bumps ``updated_at`` so a crashed run can be told apart."""
    session.execute(
        update(ProcessingJob)
        .where(ProcessingJob.id == job_id)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def is_stale(job: ProcessingJob, *, after_seconds: float) -> bool:
    """Whether a PROCESSING job has shown no sign of life for ``after_seconds`` (crashed)."""
    last = job.updated_at or job.started_at or job.created_at
    if last is None:
        return True
    if last.tzinfo is None:  # SQLite returns naive datetimes; we only ever store UTC
        last = last.replace(tzinfo=utcnow().tzinfo)
    return utcnow() - last > timedelta(seconds=after_seconds)


def attach_flow_run(session: Session, job: ProcessingJob, flow_run_id: str | None) -> None:
    """Record the Prefect flow run that executes the job, so each can find the other."""
    if flow_run_id:
        job.flow_run_id = str(flow_run_id)
        session.flush()


def add_progress(session: Session, job_id: uuid.UUID, delta: ProgressDelta) -> None:
    """Add a committed batch's counts to the job, and recompute its percentage, in SQL."""
    J = ProcessingJob
    done = J.documents_completed + delta.documents_completed
    failed = J.documents_failed + delta.documents_failed
    values: dict[str, Any] = {
        "documents_completed": done,
        "documents_failed": failed,
        "llm_calls": J.llm_calls + delta.llm_calls,
        "cells_reused": J.cells_reused + delta.cells_reused,
        "tokens_in": J.tokens_in + delta.tokens_in,
        "tokens_out": J.tokens_out + delta.tokens_out,
        "tokens_cached": J.tokens_cached + delta.tokens_cached,
        "progress": case(
            (J.documents_total > 0, 100.0 * (done + failed) / J.documents_total), else_=100.0
        ),
        "updated_at": utcnow(),
    }
    if delta.cost_usd is not None:
        values["cost_usd"] = func.coalesce(J.cost_usd, 0.0) + delta.cost_usd
    session.execute(
        update(J).where(J.id == job_id).values(**values).execution_options(
            synchronize_session=False
        )
    )


# ---------------------------------------------------------------- event log


def log_event(
    session: Session,
    job_id: uuid.UUID,
    event: str,
    message: str = "",
    *,
    level: LogLevel = LogLevel.INFO,
    document_id: uuid.UUID | None = None,
    variable_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> ProcessingLog:
    """Append an event to the job's log (errors carry document, variable and details)."""
    entry = ProcessingLog(
        job_id=job_id,
        event=event,
        message=message,
        level=level,
        document_id=document_id,
        variable_id=variable_id,
        details=dict(details or {}),
    )
    session.add(entry)
    return entry


def job_logs(
    session: Session,
    job: ProcessingJob,
    *,
    level: LogLevel | str | None = None,
    limit: int | None = 200,
    newest_first: bool = False,
) -> list[ProcessingLog]:
    """The job's events, at ``level`` or above when given."""
    order = [LogLevel.DEBUG, LogLevel.INFO, LogLevel.WARNING, LogLevel.ERROR]
    query = select(ProcessingLog).where(ProcessingLog.job_id == job.id)
    if level is not None:
        wanted = LogLevel(str(level).upper()) if not isinstance(level, LogLevel) else level
        query = query.where(ProcessingLog.level.in_(order[order.index(wanted):]))
    created = ProcessingLog.created_at.desc() if newest_first else ProcessingLog.created_at
    query = query.order_by(created)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


# ---------------------------------------------------------------- results


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


# ---------------------------------------------------------------- views


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
        "evidence": extraction.evidence_quote,
        "evidence_start": extraction.evidence_start,
        "evidence_end": extraction.evidence_end,
        "page": extraction.evidence_page,
        "grounded": extraction.grounded,
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
