"""What a run shows in the Prefect UI, computed from the database (no Prefect)."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from extraction.models import JobKind, LogLevel
from extraction.run import jobs, progress, report
from testing.extraction_factory import Cell, add_documents, add_job, make_project


def test_preview_shows_the_first_documents_values_confidence_and_a_short_quote(
    session: Session
) -> None:
    project = make_project(session)
    docs = add_documents(session, project, 12)
    long_quote = "Sponsored by Acme " + "and partners " * 20
    cells = {(d, "sponsor"): Cell(f"Acme {i}", confidence=0.81, evidence=long_quote)
             for i, d in enumerate(docs)}
    cells[(docs[0], "phase")] = Cell(None)  # not stated
    cells[(docs[1], "phase")] = Cell(None, status="failed")
    job = add_job(session, project, cells)
    rows = report.preview_rows(session, job, documents=10)
    assert {r["document"] for r in rows} == {f"doc{i:03d}.txt" for i in range(10)}
    first = [r for r in rows if r["document"] == "doc000.txt"]
    assert [r["variable"] for r in first] == ["sponsor", "phase"]  # codebook order
    assert first[0]["value"] == "Acme 0" and first[0]["confidence"] == 0.81
    assert len(first[0]["quote"]) == 80 and first[0]["quote"].endswith("…")
    assert first[1]["value"] == "(not_found)"
    failed = [r for r in rows if r["document"] == "doc001.txt" and r["variable"] == "phase"]
    assert failed[0]["value"] == "(failed)" and failed[0]["quote"] == "failed in test"


def test_failures_name_the_document_and_the_reason_not_the_text(session: Session) -> None:
    project = make_project(session)
    docs = add_documents(session, project, 2)
    job = add_job(session, project, {(docs[0], "sponsor"): "Acme"})
    progress.log_event(session, job.id, "extraction_failed", "doc001.txt: sponsor: HTTP 500",
                       level=LogLevel.ERROR, document_id=docs[1].id,
                       details={"filename": "doc001.txt", "variables": ["sponsor", "phase"],
                                "error": "HTTP 500 from the LLM server"})
    progress.log_event(session, job.id, "waiting_for_slots", "busy", level=LogLevel.WARNING)
    session.flush()
    assert report.failed_rows(session, job) == [{
        "document": "doc001.txt", "variables": "sponsor, phase",
        "reason": "HTTP 500 from the LLM server"}]


def test_new_events_tells_each_entry_once(session: Session) -> None:
    project = make_project(session)
    job = add_job(session, project, {(add_documents(session, project, 1)[0], "sponsor"): "A"})
    cursor = report.EventCursor()
    progress.log_event(session, job.id, "job_started", "started by flow run x")
    progress.log_event(session, job.id, "extraction_failed", "doc000.txt: boom",
                       level=LogLevel.ERROR)
    session.flush()
    assert report.new_events(session, job.id, cursor) == [
        (LogLevel.ERROR, "extraction_failed: doc000.txt: boom")]  # the start is said elsewhere
    assert report.new_events(session, job.id, cursor) == []
    progress.log_event(session, job.id, "job_finished", "COMPLETE: 1 documents done")
    session.flush()
    assert report.new_events(session, job.id, cursor) == [
        (LogLevel.INFO, "job_finished: COMPLETE: 1 documents done")]


def test_flow_parameters_are_the_ones_that_ran(session: Session) -> None:
    project = make_project(session)
    docs = add_documents(session, project, 3)
    sample = jobs.create_job(session, project, JobKind.SAMPLE, mode="per_variable",
                             model="m-1", document_ids=[d.id for d in docs],
                             parameters={"project": "trials", "n": 3, "seed": 7})
    assert report.flow_parameters(sample) == {
        "project": "trials", "n": 3, "seed": 7, "mode": "per_variable", "model": "m-1",
        "job_id": str(sample.id)}
    chosen = jobs.create_job(session, project, JobKind.SAMPLE, mode="per_document",
                             model="m-1", document_ids=[docs[0].id],
                             parameters={"project": "trials",
                                         "document_ids": [str(docs[0].id)]})
    assert report.flow_parameters(chosen)["n"] == 1
    assert "seed" not in report.flow_parameters(chosen)
    full = jobs.create_job(session, project, JobKind.FULL, mode="per_document", model="m-1",
                           parameters={"project": "trials", "document_filter": "2024-*"})
    assert report.flow_parameters(full)["document_filter"] == "2024-*"


def test_run_names_and_tags_carry_project_and_kind() -> None:
    job_id = uuid.UUID("5b0c1d2e-0000-4000-8000-000000000000")
    assert report.run_label("trials", JobKind.SAMPLE, job_id) == "trials/sample-5b0c1d2e"
    assert report.run_label("trials", "FULL", None) == "trials/full-no-job"
    assert report.run_tags(JobKind.FULL, "trials", job_id) == [
        "extractflow", "full", "project:trials", "kind:full", f"job:{job_id}"]
