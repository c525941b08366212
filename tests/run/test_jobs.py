"""Job lifecycle (extraction/run/jobs.py) on both databases: transitions, races, lookups."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from extraction import db
from extraction.errors import NotFoundError, StateError
from extraction.models import JobStatus, ProcessingJob, utcnow
from extraction.run import jobs, progress
from tests.run.conftest import NewJob


def test_lifecycle_follows_the_allowed_transitions(session: Session, new_job: NewJob) -> None:
    job = new_job(session)
    assert job.status is JobStatus.PENDING and job.documents_total == 4
    with pytest.raises(StateError, match="PENDING to COMPLETE"):
        jobs.finish_job(session, job)
    job = jobs.start_job(session, job)
    assert job.status is JobStatus.PROCESSING and job.started_at is not None
    job = jobs.finish_job(session, job)
    assert job.status is JobStatus.COMPLETE and job.finished_at is not None
    for target in (JobStatus.PROCESSING, JobStatus.FAILED, JobStatus.CANCELLED):
        with pytest.raises(StateError):
            jobs.transition(session, job, target)
    with pytest.raises(StateError, match="already COMPLETE"):
        jobs.cancel_job(session, job)


def test_pending_job_can_be_cancelled_and_says_why(session: Session, new_job: NewJob) -> None:
    job = new_job(session)
    job = jobs.cancel_job(session, str(job.id)[:8])
    assert job.status is JobStatus.CANCELLED and job.error == "cancelled by user"
    logged = progress.job_logs(session, job, level="warning")
    assert [entry.event for entry in logged] == ["job_cancelled"]


def test_a_cancel_wins_over_a_flow_finishing_at_the_same_time(
    db_url: str, new_job: NewJob
) -> None:
    with db.session_scope(db_url) as s:
        job_id = jobs.start_job(s, new_job(s)).id
    flow_side = db.open_session(db_url)
    try:
        seen = flow_side.get(ProcessingJob, job_id)  # the flow read PROCESSING earlier
        assert seen is not None and seen.status is JobStatus.PROCESSING
        with db.session_scope(db_url) as cli_side:
            jobs.cancel_job(cli_side, job_id)
        with pytest.raises(StateError, match="is CANCELLED"):
            jobs.transition(flow_side, job_id, JobStatus.COMPLETE, expected=JobStatus.PROCESSING)
    finally:
        flow_side.rollback()
        flow_side.close()
    with db.session_scope(db_url) as s:
        assert s.get(ProcessingJob, job_id).status is JobStatus.CANCELLED  # type: ignore[union-attr]



def test_job_lookup_by_id_prefix_and_clear_errors(session: Session, new_job: NewJob) -> None:
    job = new_job(session)
    assert jobs.get_job(session, str(job.id)).id == job.id
    assert jobs.get_job(session, str(job.id)[:8].upper()).id == job.id
    with pytest.raises(NotFoundError, match="no job with id 'ffffffffff'"):
        jobs.get_job(session, "ffffffffff")
    with pytest.raises(NotFoundError):
        jobs.get_job(session, "nope")


def test_stale_means_no_heartbeat_for_a_while(session: Session, new_job: NewJob) -> None:
    job = jobs.start_job(session, new_job(session))
    assert not jobs.is_stale(job, after_seconds=60)
    session.execute(update(ProcessingJob).where(ProcessingJob.id == job.id)
                    .values(updated_at=utcnow() - timedelta(minutes=5)))
    session.commit()
    session.refresh(job)
    assert jobs.is_stale(job, after_seconds=60)
    jobs.touch_job(session, job.id)
    session.commit()
    session.refresh(job)
    assert not jobs.is_stale(job, after_seconds=60)


def test_only_a_retry_of_its_own_flow_run_reopens_a_cancelled_job(
    session: Session, new_job: NewJob
) -> None:
    job = jobs.start_job(session, new_job(session))
    jobs.attach_flow_run(session, job, "run-1")
    job = jobs.cancel_job(session, job, reason="flow run cancelled in Prefect")
    with pytest.raises(StateError, match="only a retry of its own flow run"):
        jobs.reopen_for_retry(session, job, flow_run_id="another-run")
    job = jobs.reopen_for_retry(session, job, flow_run_id="run-1")
    assert job.status is JobStatus.PROCESSING and job.error is None and job.finished_at is None
    assert "job_retried" in [e.event for e in progress.job_logs(session, job)]
    job = jobs.finish_job(session, job)
    with pytest.raises(StateError):  # a COMPLETE job is never reopened
        jobs.reopen_for_retry(session, job, flow_run_id="run-1")
