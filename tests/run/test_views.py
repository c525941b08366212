"""Read-only views of a job (extraction/run/views.py) on both databases: results, JSON views."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from extraction.errors import NotFoundError, ValidationError
from extraction.models import LogLevel
from extraction.run import progress, views
from testing.extraction_factory import Cell, add_documents, add_job, make_project
from tests.run.conftest import NewJob


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
    everything = views.job_results(session, job)
    assert len(everything) == 4
    confident = views.job_results(session, job, min_confidence=0.8)
    assert sorted(e.confidence for e in confident) == [0.8, 0.95]
    sponsors = [views.extraction_to_dict(e)
                for e in views.job_results(session, job, variable="sponsor")]
    assert [s["variable"] for s in sponsors] == ["sponsor", "sponsor"]
    first = sponsors[0]
    assert first["filename"] == "doc000.txt" and first["value"] == "ACME"
    assert first["evidence"] == "ACME Corp" and first["page"] == 2 and first["status"] == "ok"
    assert sponsors[1]["status"] == "not_found" and sponsors[1]["value"] is None
    with pytest.raises(NotFoundError, match="no variable 'ghost'"):
        views.job_results(session, job, variable="ghost")
    with pytest.raises(ValidationError, match="between 0 and 1"):
        views.job_results(session, job, min_confidence=1.5)


def test_log_and_job_views_are_json_ready(session: Session, new_job: NewJob) -> None:
    job = new_job(session)
    progress.log_event(session, job.id, "extraction_failed", "doc: HTTP 500",
                       level=LogLevel.ERROR, details={"attempts": 3})
    session.commit()
    errors = [views.log_to_dict(e) for e in progress.job_logs(session, job, level=LogLevel.ERROR)]
    assert errors[0]["details"] == {"attempts": 3} and errors[0]["level"] == "ERROR"
    view = views.job_to_dict(job, project_name="trials")
    assert view["status"] == "PENDING" and view["documents_total"] == 4
    assert "document_ids" not in view
