"""Processing jobs: creating and finding them, and their lifecycle.

A :class:`~extraction.models.ProcessingJob` is the database side of one sample or full run.
This module is the ONE place that changes a job's status, so the lifecycle

    PENDING → PROCESSING → COMPLETE | FAILED | CANCELLED,   PENDING → CANCELLED

holds whoever asks (a flow, the CLI, a Prefect hook). Two ways back out of a final
status exist: :func:`reopen_for_retry`, for the flow run that ran the job being retried
(Prefect's Retry): it resumes the job, keeping its cells; and :func:`reopen_after_budget`:
a job its budget cap stopped goes back to PROCESSING when it is resumed with a new cap.
Each transition is a compare-and-set
``UPDATE … WHERE status = <expected>``: a cancel from the CLI racing with a flow that is
finishing can never be overwritten, the loser gets a :class:`StateError`.

What a running job records as it goes (counters, events) is in :mod:`extraction.run.progress`;
read-only views of a job and its results are in :mod:`extraction.run.views`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import String, cast, func, select, update
from sqlalchemy.orm import Session

from extraction.errors import NotFoundError, StateError, ValidationError
from extraction.models import (
    JobKind,
    JobStatus,
    LogLevel,
    ProcessingJob,
    Project,
    utcnow,
)
from extraction.run.progress import log_event

__all__ = [
    "ALLOWED_TRANSITIONS",
    "BUDGET_REASON",
    "TERMINAL",
    "attach_flow_run",
    "cancel_job",
    "create_job",
    "fail_job",
    "finish_job",
    "get_job",
    "is_cancelled",
    "is_stale",
    "list_jobs",
    "reopen_after_budget",
    "reopen_for_retry",
    "start_job",
    "stopped_by_budget",
    "touch_job",
    "transition",
]

#: The start of ``job.error`` of a job its budget cap stopped (``--max-cost``).
BUDGET_REASON = "budget reached"

#: The statuses a job never leaves (but see :func:`reopen_after_budget`).
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


def stopped_by_budget(job: ProcessingJob) -> bool:
    """Whether the job was CANCELLED by its budget cap (and so may be resumed)."""
    return job.status is JobStatus.CANCELLED and (job.error or "").startswith(BUDGET_REASON)


def reopen_after_budget(session: Session, job: ProcessingJob) -> ProcessingJob:
    """CANCELLED by the budget cap → PROCESSING, to go on under a new cap.

    The only way out of a final status: a cap is the user's own stop, not a verdict on the
    job, and its cells are all kept. A compare-and-set like :func:`transition`.
    """
    if not stopped_by_budget(job):
        raise StateError(f"job {job.id} is {job.status.value} and was not stopped by its "
                         "budget cap; it cannot be resumed", field="status",
                         instance=str(job.id))
    _reopen(session, job, JobStatus.CANCELLED, "while it was resumed")
    log_event(session, job.id, "job_resumed_after_budget",
              "resumed after its budget cap: cells already written are kept and skipped",
              level=LogLevel.WARNING)
    return job


def reopen_for_retry(session: Session, job: ProcessingJob, *, flow_run_id: str
                     ) -> ProcessingJob:
    """FAILED or CANCELLED → PROCESSING, when the flow run that ran the job is retried.

    Only that flow run may do it (Prefect's Retry re-runs the same flow run with its
    recorded parameters): a new run of a finished job is still refused by the lifecycle.
    The cells already written are kept; the run extracts the rest, like a resume.
    """
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED) or \
            job.flow_run_id != str(flow_run_id):
        raise StateError(
            f"job {job.id} is {job.status.value}; only a retry of its own flow run may "
            "reopen a failed or cancelled job", field="status", instance=str(job.id))
    before = job.status
    _reopen(session, job, before, "while being reopened")
    log_event(session, job.id, "job_retried",
              f"{before.value} job reopened by a retry of flow run {flow_run_id}; the cells "
              "already extracted are kept", details={"from": before.value})
    return job


def _reopen(session: Session, job: ProcessingJob, expected: JobStatus, during: str) -> None:
    """``expected`` → PROCESSING, clearing the end (error, finished_at): a compare-and-set
    like :func:`transition`, shared by the two ways out of a final status."""
    result = session.execute(
        update(ProcessingJob)
        .where(ProcessingJob.id == job.id, ProcessingJob.status == expected)
        .values(status=JobStatus.PROCESSING, error=None, finished_at=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise StateError(f"job {job.id} changed {during}", field="status",
                         instance=str(job.id))
    session.refresh(job)


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
