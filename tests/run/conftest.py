"""A pending job of four documents, for the tests of a job's lifecycle, progress and views."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from extraction.models import JobKind, ProcessingJob
from extraction.run import jobs
from testing.extraction_factory import add_documents, make_project

NewJob = Callable[[Session], ProcessingJob]


def _new_job(session: Session) -> ProcessingJob:
    project = make_project(session)
    docs = add_documents(session, project, 4)
    job = jobs.create_job(session, project, JobKind.FULL, mode="per_document",
                          model="fake-model", document_ids=[d.id for d in docs])
    session.commit()
    return job


@pytest.fixture
def new_job() -> NewJob:
    """Makes a committed PENDING full job of a new project with four documents."""
    return _new_job
