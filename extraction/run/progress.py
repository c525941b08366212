"""What a running job records as it goes: its progress counters and its event log.

Counters are incremented in SQL (``x = x + :delta``) in the same transaction as the
extractions they count, so counters and rows never disagree, even after a crash or when
several chunks of a run commit at the same time. Events (started, failed cells, cancelled,
finished) are rows of :class:`~extraction.models.ProcessingLog`, so the CLI can show a run's
history without Prefect.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Self

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from extraction.models import LogLevel, ProcessingJob, ProcessingLog, utcnow

__all__ = ["ProgressDelta", "add_progress", "job_logs", "log_event"]


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
