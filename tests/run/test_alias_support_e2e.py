"""Category aliases through a real run (fake server over HTTP, real openai SDK), on SQLite and
PostgreSQL: an answer given as an alias is stored as its label, and the CATEGORY support
check reads aliases in the quote."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from config.settings import get_settings
from extraction import db
from extraction.models import Document, Extraction, JobKind
from extraction.run.plan import create_run_job
from testing.extraction_factory import add_document
from testing.fake_llm_server import ChatRequest, FakeLLMServer
from testing.run_factory import make_project, point_at_fake_llm
from tests.run.test_runner import _run

SPONSOR = {"name": "sponsor_type", "type": "CATEGORY", "categories": ["Industry", "Academic"],
           "category_aliases": {"Industry": ["Inc.", "pharmaceutical company"],
                                "Academic": ["university"]},
           "instructions": "Who funds the trial."}

#: document text → (the model's value, its quote)
ANSWERS = {
    "The trial is funded by the University of Eastbridge.":
        ("University", "funded by the University of Eastbridge"),
    "The trial is funded by Norvale Pharmaceuticals Inc.":
        ("Academic", "funded by Norvale Pharmaceuticals Inc."),
    "The trial is funded by Acme.": ("Industry", "funded by Acme"),
}


def _answer(request: ChatRequest) -> dict[str, Any]:
    value, quote = ANSWERS[request.document.strip()]
    return {"sponsor_type": {"value": value, "evidence": quote, "confidence": 0.9}}


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model="fake-model", responder=_answer) as server:
        point_at_fake_llm(monkeypatch, server.base_url)
        yield server


def test_aliases_in_answers_and_quotes(db_url: str, llm: FakeLLMServer) -> None:
    with db.session_scope(db_url) as s:
        project = make_project(s, variables=[SPONSOR])
        for index, text in enumerate(ANSWERS):
            add_document(s, project, f"doc{index}.txt", text)
        job_id = create_run_job(s, get_settings(), kind=JobKind.FULL, project="trials").id
    _run(db_url, job_id)
    with db.session_scope(db_url) as s:
        rows = {text: e for e, text in s.execute(
            select(Extraction, Document.text).join(Document)
            .where(Extraction.job_id == job_id))}
    academic, wrong, inferred = (rows[t] for t in ANSWERS)
    assert (academic.value, academic.support) == ("Academic", "supported")
    assert academic.confidence == 0.9
    assert (wrong.value, wrong.support) == ("Academic", "unsupported")
    assert wrong.support_reason == "the quote names 'Industry', not 'Academic'"
    assert wrong.confidence == 0.45
    assert (inferred.value, inferred.support) == ("Industry", "not_checkable")
    prompt = llm.requests[0].chat.user_text
    assert '"Industry" (also called: Inc., pharmaceutical company)' in prompt
