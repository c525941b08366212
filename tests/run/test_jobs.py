"""Job lifecycle, counters, log and results queries (extraction/run/jobs.py) on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from extraction import db
from extraction.errors import NotFoundError, StateError, ValidationError
from extraction.models import JobKind, JobStatus, LogLevel, ProcessingJob, utcnow
from extraction.run import jobs
from testing.extraction_factory import Cell, add_documents, add_job, make_project


def _new_job(session: Session) -> ProcessingJob:
    project = make_project(session)
    docs = add_documents(session, project, 4)
    job = jobs.create_job(session, project, JobKind.FULL, mode="per_document",
                          model="fake-model", document_ids=[d.id for d in docs])
    session.commit()
    return job


def test_lifecycle_follows_the_allowed_transitions(session: Session) -> None:
    job = _new_job(session)
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


def test_pending_job_can_be_cancelled_and_says_why(session: Session) -> None:
    job = _new_job(session)
    job = jobs.cancel_job(session, str(job.id)[:8])
    assert job.status is JobStatus.CANCELLED and job.error == "cancelled by user"
    logged = jobs.job_logs(session, job, level="warning")
    assert [entry.event for entry in logged] == ["job_cancelled"]


def test_a_cancel_wins_over_a_flow_finishing_at_the_same_time(db_url: str) -> None:
    with db.session_scope(db_url) as s:
        job_id = jobs.start_job(s, _new_job(s)).id
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


def test_progress_counters_add_up_in_sql(session: Session) -> None:
    job = jobs.start_job(session, _new_job(session))
    jobs.add_progress(session, job.id, jobs.ProgressDelta(documents_completed=2, llm_calls=2,
                                                          tokens_in=100, tokens_out=10,
                                                          cost_usd=0.5))
    jobs.add_progress(session, job.id, jobs.ProgressDelta(documents_failed=1, cells_reused=3,
                                                          cost_usd=0.25))
    session.commit()
    session.refresh(job)
    assert (job.documents_completed, job.documents_failed) == (2, 1)
    assert job.progress == pytest.approx(75.0)
    assert (job.llm_calls, job.cells_reused, job.tokens_in, job.tokens_out) == (2, 3, 100, 10)
    assert job.cost_usd == pytest.approx(0.75)


def test_job_lookup_by_id_prefix_and_clear_errors(session: Session) -> None:
    job = _new_job(session)
    assert jobs.get_job(session, str(job.id)).id == job.id
    assert jobs.get_job(session, str(job.id)[:8].upper()).id == job.id
    with pytest.raises(NotFoundError, match="no job with id 'ffffffffff'"):
        jobs.get_job(session, "ffffffffff")
    with pytest.raises(NotFoundError):
        jobs.get_job(session, "nope")


def test_stale_means_no_heartbeat_for_a_while(session: Session) -> None:
    job = jobs.start_job(session, _new_job(session))
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


def test_results_filter_by_confidence_and_variable(session: Session) -> None:
    project = make_project(session)
    docs = add_documents(session, project, 2)
    job = add_job(session, project, {
        (docs[0], "sponsor"): Cell("ACME", confidence=0.95, evidence="ACME Corp", page=2),
        (docs[0], "enrollment"): Cell(120, confidence=0.4),
        (docs[1], "sponsor"): Cell(None, confidence=0.8),
        (docs[1], "enrollment"): Cell(None, status="failed", confidence=None),
    })
    session.commit()
    everything = jobs.job_results(session, job)
    assert len(everything) == 4
    confident = jobs.job_results(session, job, min_confidence=0.8)
    assert sorted(e.confidence for e in confident) == [0.8, 0.95]
    sponsors = [jobs.extraction_to_dict(e) for e in jobs.job_results(session, job,
                                                                      variable="sponsor")]
    assert [s["variable"] for s in sponsors] == ["sponsor", "sponsor"]
    first = sponsors[0]
    assert first["filename"] == "doc000.txt" and first["value"] == "ACME"
    assert first["evidence"] == "ACME Corp" and first["page"] == 2 and first["status"] == "ok"
    assert sponsors[1]["status"] == "not_found" and sponsors[1]["value"] is None
    with pytest.raises(NotFoundError, match="no variable 'ghost'"):
        jobs.job_results(session, job, variable="ghost")
    with pytest.raises(ValidationError, match="between 0 and 1"):
        jobs.job_results(session, job, min_confidence=1.5)


def test_logs_filter_by_level_and_views_are_json_ready(session: Session) -> None:
    job = _new_job(session)
    jobs.log_event(session, job.id, "note", "started")
    jobs.log_event(session, job.id, "extraction_failed", "doc: HTTP 500", level=LogLevel.ERROR,
                   details={"attempts": 3})
    session.commit()
    assert len(jobs.job_logs(session, job)) == 2
    errors = [jobs.log_to_dict(e) for e in jobs.job_logs(session, job, level=LogLevel.ERROR)]
    assert errors[0]["details"] == {"attempts": 3} and errors[0]["level"] == "ERROR"
    view = jobs.job_to_dict(job, project_name="trials")
    assert view["status"] == "PENDING" and view["documents_total"] == 4
    assert "document_ids" not in view
