"""`extractflow job …` on stored jobs: list, show, logs, results filters, cancel, errors."""

from __future__ import annotations

from extraction import db
from extraction.models import JobKind, JobStatus, LogLevel
from extraction.run import jobs, progress
from testing.extraction_factory import Cell, add_documents, add_job, make_project
from tests.cli_helpers import run_cli


def _stored_job(db_url: str) -> tuple[str, str]:
    with db.session_scope(db_url) as s:
        project = make_project(s)
        docs = add_documents(s, project, 2)
        job = add_job(s, project, {
            (docs[0], "sponsor"): Cell("ACME", confidence=0.95, evidence="sponsored by ACME",
                                       page=1),
            (docs[0], "enrollment"): Cell(120.0, confidence=0.5),
            (docs[1], "sponsor"): Cell(None, confidence=0.7),
            (docs[1], "enrollment"): Cell(None, status="failed", confidence=None),
        })
        progress.log_event(s, job.id, "extraction_failed", "doc001.txt: enrollment: HTTP 503",
                           level=LogLevel.ERROR, document_id=docs[1].id,
                           details={"attempts": 4, "error": "HTTP 503"})
        return str(job.id), str(docs[0].id)


def test_results_filters_and_json_shape(db_url: str) -> None:
    job_id, doc0 = _stored_job(db_url)
    every = run_cli("job", "results", job_id, "--json")
    assert every.exit_code == 0, every.stderr
    assert len(every.json()) == 4
    confident = run_cli("job", "results", job_id[:8], "--min-confidence", "0.9", "--json").json()
    assert [(c["variable"], c["value"]) for c in confident] == [("sponsor", "ACME")]
    first = confident[0]
    assert first["document_id"] == doc0 and first["filename"] == "doc000.txt"
    assert (first["status"], first["confidence"], first["evidence"], first["page"]) == (
        "ok", 0.95, "sponsored by ACME", 1)
    numbers = run_cli("job", "results", job_id, "--variable", "enrollment", "--json").json()
    assert [n["value"] for n in numbers] == [120.0, None]
    assert [n["status"] for n in numbers] == ["ok", "failed"]
    shown = run_cli("job", "results", job_id, "--min-confidence", "0.6")
    assert "ACME" in shown.stdout and "2 extractions" in shown.stdout
    bad = run_cli("job", "results", job_id, "--variable", "ghost")
    assert bad.exit_code == 3 and "no variable 'ghost'" in bad.stderr
    out_of_range = run_cli("job", "results", job_id, "--min-confidence", "2")
    assert out_of_range.exit_code != 0


def test_list_show_and_logs(db_url: str) -> None:
    job_id, _ = _stored_job(db_url)
    listed = run_cli("job", "list", "trials", "--json")
    assert [j["id"] for j in listed.json()] == [job_id]
    assert job_id[:8] in run_cli("job", "list", "trials").stdout
    shown = run_cli("job", "show", job_id, "--json").json()
    assert shown["status"] == "COMPLETE"
    assert shown["recent_logs"][0]["details"]["attempts"] == 4
    human = run_cli("job", "show", job_id[:8])
    assert "COMPLETE" in human.stdout and "HTTP 503" in human.stdout
    errors = run_cli("job", "logs", job_id, "--level", "error", "--json").json()
    assert [e["event"] for e in errors] == ["extraction_failed"]
    assert run_cli("job", "logs", job_id, "--level", "loud").exit_code == 4


def test_cancel_a_pending_job_and_refuse_a_finished_one(db_url: str) -> None:
    done_id, _ = _stored_job(db_url)
    with db.session_scope(db_url) as s:
        project = jobs.get_job(s, done_id).project
        pending = jobs.create_job(s, project, JobKind.SAMPLE, mode="per_document",
                                  model="fake-model", document_ids=[])
        pending_id = str(pending.id)
    cancelled = run_cli("job", "cancel", pending_id, "--json")
    assert cancelled.exit_code == 0, cancelled.stderr
    assert cancelled.json()["status"] == "CANCELLED"
    with db.session_scope(db_url) as s:
        assert jobs.get_job(s, pending_id).status is JobStatus.CANCELLED
    again = run_cli("job", "cancel", done_id)
    assert again.exit_code == 6 and "already COMPLETE" in again.stderr
    assert "Traceback" not in again.stderr


def test_unknown_job_is_a_clear_error(db_url: str) -> None:
    missing = run_cli("job", "show", "deadbeef", "--json")
    assert missing.exit_code == 3
    assert missing.json()["error"]["detail"] == "no job with id 'deadbeef'"
