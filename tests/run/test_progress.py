"""A running job's record (extraction/run/progress.py) on both databases: counters and event log."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from extraction.models import LogLevel
from extraction.run import jobs, progress
from tests.run.conftest import NewJob


def test_progress_counters_add_up_in_sql(session: Session, new_job: NewJob) -> None:
    job = jobs.start_job(session, new_job(session))
    progress.add_progress(session, job.id, progress.ProgressDelta(
        documents_completed=2, llm_calls=2, tokens_in=100, tokens_out=10, cost_usd=0.5))
    progress.add_progress(session, job.id, progress.ProgressDelta(
        documents_failed=1, cells_reused=3, cost_usd=0.25))
    session.commit()
    session.refresh(job)
    assert (job.documents_completed, job.documents_failed) == (2, 1)
    assert job.progress == pytest.approx(75.0)
    assert (job.llm_calls, job.cells_reused, job.tokens_in, job.tokens_out) == (2, 3, 100, 10)
    assert job.cost_usd == pytest.approx(0.75)


def test_logs_filter_by_level(session: Session, new_job: NewJob) -> None:
    job = new_job(session)
    progress.log_event(session, job.id, "note", "started")
    progress.log_event(session, job.id, "extraction_failed", "doc: HTTP 500",
                       level=LogLevel.ERROR, details={"attempts": 3})
    session.commit()
    assert len(progress.job_logs(session, job)) == 2
    errors = progress.job_logs(session, job, level=LogLevel.ERROR)
    assert [(e.event, e.level, e.details) for e in errors] == [
        ("extraction_failed", LogLevel.ERROR, {"attempts": 3})]
