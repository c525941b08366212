"""The value–quote check through a real run: the fake server answers some values wrong while
quoting the right sentence; the stored ``support``, the confidence, job results, exports and
the review workbook all show it, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from sqlalchemy import select

from config.settings import get_settings
from extraction import db
from extraction.export import ExportOptions, export_project
from extraction.models import Document, Extraction, JobKind, Variable
from extraction.review.workbook import COLUMNS, REVIEW_SHEET
from extraction.review.workbook_export import export_review_workbook
from extraction.run import jobs, views
from extraction.run.plan import create_run_job
from extraction.run.summary import finalize_job
from testing.answer_faults import AnswerFaults
from testing.fake_llm_server import FakeLLMServer, SchemaResponder
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm
from tests.run.test_runner import _run

DOCS = 12


@pytest.fixture
def faults() -> AnswerFaults:
    return AnswerFaults(SchemaResponder(confidence=0.9), wrong_value=0.5, seed=3)


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch, faults: AnswerFaults) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model="fake-model", responder=faults) as server:
        point_at_fake_llm(monkeypatch, server.base_url)
        yield server


def _truth(index: int) -> dict[str, object]:
    """What testing.run_factory.trial_text(index) states."""
    return {"sponsor": f"Sponsor{index} Labs sponsored this trial", "enrollment": 100.0 + index,
            "phase": f"Phase {index % 3 + 1}", "start_date": f"2024-{index % 12 + 1:02d}-15",
            "randomised": True}


def _complete_run(db_url: str) -> uuid.UUID:
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), DOCS)
        job_id = create_run_job(s, get_settings(), kind=JobKind.FULL, project="trials").id
    _run(db_url, job_id)
    with db.session_scope(db_url) as s:
        finalize_job(s, job_id, "complete")
    return job_id


def test_wrong_values_beside_right_quotes_are_stored_unsupported_and_rank_last(
        db_url: str, llm: FakeLLMServer, faults: AnswerFaults, tmp_path: Path) -> None:
    job_id = _complete_run(db_url)
    assert faults.faulted["wrong_value"] > 10  # about half of 60 cells
    with db.session_scope(db_url) as s:
        rows = s.execute(select(Extraction, Document.filename, Variable.name)
                         .join(Document, Document.id == Extraction.document_id)
                         .join(Variable, Variable.id == Extraction.variable_id)
                         .where(Extraction.job_id == job_id)).all()
        results = [views.extraction_to_dict(e) for e in
                   views.job_results(s, jobs.get_job(s, str(job_id)))]
    assert len(rows) == DOCS * 5
    right_conf, wrong_conf = [], []
    for extraction, filename, name in rows:
        index = int(filename.removeprefix("trial").removesuffix(".txt"))
        wrong = extraction.value != _truth(index)[name]
        assert extraction.grounded, "the quote is the right sentence, so it is in the document"
        assert extraction.support == ("unsupported" if wrong else "supported"), (
            name, extraction.value, extraction.evidence_quote, extraction.support_reason)
        (wrong_conf if wrong else right_conf).append(extraction.confidence)
    assert set(right_conf) == {0.9} and set(wrong_conf) == {0.45}
    enrollment = next(e for e, _, n in rows if n == "enrollment" and e.support == "unsupported")
    assert enrollment.support_reason.startswith("the quote states 1")
    assert {r["support"] for r in results} == {"supported", "unsupported"}
    assert all(r["support_reason"] for r in results)

    with db.session_scope(db_url) as s:
        long = export_project(s, "trials", ExportOptions(
            format="csv-long", output=tmp_path / "long.csv", include_confidence=True))
        wide = export_project(s, "trials", ExportOptions(
            format="csv-wide", output=tmp_path / "wide.csv", include_confidence=True))
        plain = export_project(s, "trials", ExportOptions(
            format="csv-long", output=tmp_path / "plain.csv"))
        review = export_review_workbook(s, job_id, tmp_path / "review.xlsx")
    frame = pd.read_csv(long.path, dtype=str, keep_default_na=False)
    assert list(frame.columns[5:9]) == ["status", "confidence", "support", "prompt_version"]
    by_support = frame.groupby("support")["confidence"].agg(set).to_dict()
    assert by_support == {"supported": {"0.9"}, "unsupported": {"0.45"}}
    wide_frame = pd.read_csv(wide.path, dtype=str, keep_default_na=False)
    assert {"enrollment__confidence", "enrollment__support"} <= set(wide_frame.columns)
    assert set(wide_frame["enrollment__support"]) == {"supported", "unsupported"}
    assert "support" not in pd.read_csv(plain.path).columns  # only with --include-confidence
    sheet = openpyxl.load_workbook(review.path)[REVIEW_SHEET]
    column = [key for key, _ in COLUMNS].index("support")
    marks = [row[column] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert sorted(set(marks)) == ["supported", "unsupported"]

    # A re-run re-uses the cells without asking the server, and keeps their verdicts.
    asked = llm.total_requests
    with db.session_scope(db_url) as s:
        again = create_run_job(s, get_settings(), kind=JobKind.FULL, project="trials").id
    _run(db_url, again)
    assert llm.total_requests == asked
    with db.session_scope(db_url) as s:
        def verdicts(job: uuid.UUID) -> dict:
            return {(e.document_id, e.variable_id): (e.support, e.support_reason, e.confidence)
                    for e in s.scalars(select(Extraction).where(Extraction.job_id == job))}
        assert verdicts(again) == verdicts(job_id)
