"""A run's job seen from the flow that runs it: open it, read its chunks, follow it, find it.

Each function opens its own session (``extraction.db.session_scope``) and is blocking: the
async flow calls them in a worker thread. Status changes go through
:mod:`extraction.run.jobs`, the one place that sets a job's status.

* :func:`start_job` — create the job (a deployment or a schedule starts the flow without
  one) or take the given one, open it (PENDING → PROCESSING, or resume a PROCESSING job
  whose heartbeat stopped, or reopen a failed or cancelled job when its own flow run is
  retried in Prefect), record the flow run on it.
* :func:`load_chunks` — the job's session-free plan and its documents still to extract, in
  chunks.
* :func:`poll_job`, :func:`job_progress`, :func:`job_status`, :func:`log_event` — what the
  flow reads and writes while the job runs.
* :func:`job_for_flow_run` — the job of a flow run (by the run id it stores, else the
  ``job:<id>`` tag, else the ``job_id`` parameter), for the flow's state hooks;
  :func:`cancel_for_flow_run` and :func:`note_crash` are those hooks' work.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.settings import Settings
from extraction.db import session_scope
from extraction.errors import ExtractflowError
from extraction.models import JobKind, JobStatus, LogLevel, ProcessingJob
from extraction.run import jobs, progress, report
from extraction.run.plan import (
    RunPlan,
    chunked,
    create_run_job,
    load_plan,
    open_job,
    pending_documents,
)
from extraction.run.shards import shard_pending

__all__ = [
    "cancel_for_flow_run",
    "job_for_flow_run",
    "job_progress",
    "job_status",
    "load_chunks",
    "log_event",
    "new_events",
    "note_crash",
    "plan_line",
    "poll_job",
    "progress_line",
    "results_tables",
    "run_facts",
    "start_job",
]


def start_job(kind: JobKind, params: Mapping[str, Any], *, job_id: str | None, force: bool,
              flow_run_id: str | None, settings: Settings) -> tuple[uuid.UUID, bool]:
    """Open the run's job; returns its id and whether it was resumed.

    Args:
        kind: SAMPLE or FULL; a given ``job_id`` of the other kind is refused.
        params: What :func:`extraction.run.plan.create_run_job` takes, for a new job.
        job_id: Run this job (the CLI creates it first, to show its id at once).
        force: Resume the job even if its heartbeat looks alive.
        flow_run_id: The Prefect flow run, stored on the job and in its log.
        settings: For a new job's defaults and the heartbeat's staleness.

    Raises:
        ExtractflowError: An unknown project or job, a job of the other kind, or a job that
            cannot be opened (finished, or still running elsewhere).
    """
    with session_scope() as session:
        if job_id is None:
            job = create_run_job(session, settings, kind=kind, **params)
            job_id = str(job.id)
        existing = jobs.get_job(session, job_id)
        if flow_run_id and existing.flow_run_id == str(flow_run_id) and \
                existing.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            job, resumed = jobs.reopen_for_retry(session, existing, flow_run_id=flow_run_id), True
        else:
            job, resumed = open_job(session, job_id, stale_after=settings.job_stale_seconds,
                                    force=force)
        if job.kind is not kind:
            raise ExtractflowError(f"job {job.id} is a {job.kind.value} job, not {kind.value}")
        jobs.attach_flow_run(session, job, flow_run_id)
        progress.log_event(session, job.id, "job_started",
                       f"{'resumed' if resumed else 'started'} by flow run {flow_run_id}",
                       details={"flow_run_id": flow_run_id})
        return job.id, resumed


def run_facts(job_id: uuid.UUID) -> dict[str, Any]:
    """What the flow needs to name the run and show its parameters: project name, kind, the
    parameters that really ran (resolved mode and model, the seed drawn, the job id)."""
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        return {"project": job.project.name, "kind": job.kind,
                "parameters": report.flow_parameters(job)}


def plan_line(job_id: uuid.UUID) -> str:
    with session_scope() as session:
        return report.plan_line(session, jobs.get_job(session, job_id))


def progress_line(job_id: uuid.UUID) -> str:
    with session_scope() as session:
        return report.progress_line(jobs.get_job(session, job_id))


def new_events(job_id: uuid.UUID, cursor: report.EventCursor) -> list[tuple[LogLevel, str]]:
    with session_scope() as session:
        return report.new_events(session, job_id, cursor)


def results_tables(job_id: uuid.UUID, *, documents: int
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """The preview rows, the failed rows and the final progress of a finished job."""
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        return (report.preview_rows(session, job, documents=documents),
                report.failed_rows(session, job), float(job.progress or 0.0))


def load_chunks(job_id: uuid.UUID, chunk_size: int, *, shard: int | None = None
                ) -> tuple[RunPlan, list[list[uuid.UUID]]]:
    """The job's plan and its documents not extracted yet (of one ``shard`` when given),
    ``chunk_size`` at a time."""
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        plan = load_plan(session, job)
        todo = pending_documents(session, plan) if shard is None else \
            shard_pending(session, job_id, shard)
    return plan, chunked(todo, chunk_size)


def poll_job(job_id: uuid.UUID, *, touch: bool) -> bool:
    """Whether the job was cancelled; with ``touch``, also write its heartbeat."""
    with session_scope() as session:
        if touch:
            jobs.touch_job(session, job_id)
        return jobs.is_cancelled(session, job_id)


def job_status(job_ref: str) -> JobStatus | None:
    """The job's status, or None if it cannot be read (unknown id, database gone)."""
    with session_scope() as session, contextlib.suppress(ExtractflowError):
        return jobs.get_job(session, job_ref).status
    return None


def job_progress(job_id: uuid.UUID) -> float:
    """The job's progress in percent (0 for a job that is gone)."""
    with session_scope() as session:
        job = session.get(ProcessingJob, job_id)
        return float(job.progress or 0.0) if job else 0.0


def log_event(job_id: uuid.UUID, event: str, message: str, *, level: LogLevel = LogLevel.INFO,
              details: dict[str, Any] | None = None) -> None:
    """Add an entry to the job's log."""
    with session_scope() as session:
        progress.log_event(session, job_id, event, message, level=level, details=details)


def job_for_flow_run(session: Session, flow_run_id: str, *, tags: Sequence[str] = (),
                     parameters: Mapping[str, Any] | None = None) -> ProcessingJob | None:
    """The job a flow run works on: the one that stores its id, else its ``job:<id>`` tag,
    else its ``job_id`` parameter (a run that crashed before it recorded itself)."""
    job = session.scalar(select(ProcessingJob).where(ProcessingJob.flow_run_id == flow_run_id))
    if job is not None:
        return job
    for tag in tags:
        if tag.startswith("job:"):
            with contextlib.suppress(ExtractflowError):
                return jobs.get_job(session, tag[4:])
    job_id = (parameters or {}).get("job_id")
    if job_id:
        with contextlib.suppress(ExtractflowError):
            return jobs.get_job(session, job_id)
    return None


def cancel_for_flow_run(flow_run_id: str, *, tags: Sequence[str] = (),
                        parameters: Mapping[str, Any] | None = None) -> None:
    """A flow run was cancelled from outside (and killed): its job becomes CANCELLED, its
    written cells kept."""
    with session_scope() as session:
        job = job_for_flow_run(session, flow_run_id, tags=tags, parameters=parameters)
        if job is not None and job.status not in jobs.TERMINAL:
            jobs.cancel_job(session, job, reason="flow run cancelled in Prefect")


def note_crash(flow_run_id: str, message: str, *, tags: Sequence[str] = (),
               parameters: Mapping[str, Any] | None = None) -> None:
    """A flow run crashed: its job stays PROCESSING (resumable); say how to resume it."""
    with session_scope() as session:
        job = job_for_flow_run(session, flow_run_id, tags=tags, parameters=parameters)
        if job is not None and job.status is JobStatus.PROCESSING:
            progress.log_event(
                session, job.id, "flow_run_crashed",
                f"flow run crashed ({message}); resume with "
                f"`extractflow run resume {job.id}`", level=LogLevel.ERROR,
            )
