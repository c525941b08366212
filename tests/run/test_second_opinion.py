"""Second opinions through real runs: the fake server over HTTP (real openai SDK) answers the
first call wrong for half the cells and the samples or the challenger differently, on SQLite
and PostgreSQL. Off by default (no extra call); agreement keeps the confidence, disagreement
lowers it or, when chosen, leaves the cell null and disputed; every extra call is counted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from config.settings import get_settings
from extraction import db
from extraction.models import (
    Document,
    Extraction,
    ExtractionStatus,
    JobKind,
    ProcessingJob,
    ProcessingLog,
    Variable,
    VariableType,
)
from extraction.run.plan import create_run_job
from extraction.run.second_opinion import extra_calls_per_document, same_answer
from extraction.run.summary import finalize_job
from testing.fake_llm_server import FakeLLMServer, SchemaResponder
from testing.opinion_faults import OpinionFaults
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm
from tests.run.test_runner import _run

DOCS = 8
VARIABLES = 5


def _truth(index: int) -> dict[str, object]:
    """What testing.run_factory.trial_text(index) states."""
    return {"sponsor": f"Sponsor{index} Labs sponsored this trial", "enrollment": 100.0 + index,
            "phase": f"Phase {index % 3 + 1}", "start_date": f"2024-{index % 12 + 1:02d}-15",
            "randomised": True}


@pytest.fixture
def faults() -> OpinionFaults:
    # The first answer is wrong in about half the cells; samples never repeat a wrong value
    # and challengers are always right, so agreement separates right from wrong exactly.
    return OpinionFaults(SchemaResponder(confidence=0.9), wrong_value=0.5, repeat=0.0,
                         noise=0.0, challenger=0.0, seed=3)


@pytest.fixture
def llm(faults: OpinionFaults) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model=None, responder=faults) as server:  # any model name
        yield server


def _complete_run(db_url: str) -> uuid.UUID:
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), DOCS)
        job_id = create_run_job(s, get_settings(), kind=JobKind.FULL, project="trials").id
    _run(db_url, job_id)
    with db.session_scope(db_url) as s:
        finalize_job(s, job_id, "complete")
    return job_id


def _cells(db_url: str, job_id: uuid.UUID) -> list[tuple[Extraction, bool]]:
    """Every stored cell, with whether the first answer was wrong."""
    with db.session_scope(db_url) as s:
        rows = s.execute(select(Extraction, Document.filename, Variable.name)
                         .join(Document, Document.id == Extraction.document_id)
                         .join(Variable, Variable.id == Extraction.variable_id)
                         .where(Extraction.job_id == job_id)).all()
        s.expunge_all()
    out = []
    for extraction, filename, name in rows:
        index = int(filename.removeprefix("trial").removesuffix(".txt"))
        first = extraction.value if extraction.status is ExtractionStatus.OK else None
        if extraction.opinion == "disputed":
            first = "disputed"
        out.append((extraction, first != _truth(index)[name]))
    return out


def _job(db_url: str, job_id: uuid.UUID) -> ProcessingJob:
    with db.session_scope(db_url) as s:
        job = s.get(ProcessingJob, job_id)
        s.expunge(job)
    return job


def test_off_by_default_no_extra_calls(db_url: str, llm: FakeLLMServer,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    point_at_fake_llm(monkeypatch, llm.base_url)
    assert extra_calls_per_document(get_settings(), "per_document", VARIABLES) == 0
    job_id = _complete_run(db_url)
    assert llm.total_requests == DOCS
    assert {(e.agreement, e.opinion) for e, _ in _cells(db_url, job_id)} == {(None, None)}
    assert "second_opinion_calls" not in _job(db_url, job_id).summary


def test_self_consistency_lowers_the_wrong_and_counts_the_calls(
        db_url: str, llm: FakeLLMServer, faults: OpinionFaults,
        monkeypatch: pytest.MonkeyPatch) -> None:
    point_at_fake_llm(monkeypatch, llm.base_url, second_opinion_samples=2)
    assert extra_calls_per_document(get_settings(), "per_document", VARIABLES) == 2
    job_id = _complete_run(db_url)
    assert llm.total_requests == DOCS * 3
    seeds = sorted({r.chat.body.get("seed") for r in llm.requests if r.chat}, key=str)
    assert seeds == [1, 2, None]
    samples = [r.chat.body for r in llm.requests if r.chat and r.chat.body.get("seed")]
    assert {b["temperature"] for b in samples} == {0.7}
    cells = _cells(db_url, job_id)
    assert faults.faulted["wrong_value"] > 5
    for extraction, wrong in cells:
        if not wrong:  # every sample repeats a right answer
            assert (extraction.agreement, extraction.opinion) == (1.0, "agreed")
            assert extraction.confidence == extraction.self_confidence * (
                0.5 if extraction.support == "unsupported" else 1.0)
            continue
        # a sample that does not repeat the wrong value answers right or another wrong value
        assert extraction.opinion in ("split", "agreed"), extraction.opinion_reason
        assert extraction.opinion_reason.startswith("samples: ")
    wrong_conf = [e.confidence for e, w in cells if w]
    right_conf = [e.confidence for e, w in cells if not w]
    assert max(wrong_conf) < min(right_conf)
    assert sum(e.opinion == "split" for e, w in cells if w) >= len(wrong_conf) - 2
    job = _job(db_url, job_id)
    assert job.llm_calls == DOCS * 3
    assert job.summary["second_opinion_calls"] == DOCS * 2
    with db.session_scope(db_url) as s:
        logged = s.scalars(select(ProcessingLog.details).where(
            ProcessingLog.job_id == job_id, ProcessingLog.event == "second_opinion_calls")).all()
    assert sum(d["calls"] for d in logged) == DOCS * 2


def test_a_disagreeing_challenger_nulls_the_cell_as_disputed(
        db_url: str, llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    point_at_fake_llm(monkeypatch, llm.base_url, challenger_model="judge-model",
                      challenger_on_disagreement="null")
    job_id = _complete_run(db_url)
    assert llm.total_requests == DOCS * 2
    assert sorted({r.chat.model for r in llm.requests if r.chat}) == ["fake-model",
                                                                       "judge-model"]
    cells = _cells(db_url, job_id)
    disputed = [e for e, _ in cells if e.opinion == "disputed"]
    assert len(disputed) > 5
    for extraction, wrong in cells:
        if extraction.opinion == "disputed":
            assert extraction.status is ExtractionStatus.NOT_FOUND and extraction.value is None
            assert extraction.opinion_reason.startswith("disputed, no value stored; ")
            assert "challenger judge-model: " in extraction.opinion_reason
            assert extraction.raw_answer  # the first model's answer stays for the reviewer
        else:
            assert not wrong and extraction.opinion == "agreed"
            assert extraction.agreement == 1.0
    assert _job(db_url, job_id).summary["cells_disputed"] == len(disputed)


def test_a_challenger_on_its_own_endpoint_lowers_the_confidence(
        db_url: str, llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeLLMServer(model="judge-model", responder=SchemaResponder(confidence=0.9)) as judge:
        point_at_fake_llm(monkeypatch, llm.base_url, challenger_model="judge-model",
                          challenger_base_url=judge.base_url, challenger_api_key="sk-judge")
        job_id = _complete_run(db_url)
        assert judge.total_requests == DOCS and llm.total_requests == DOCS
        assert {r.headers.get("authorization") for r in judge.requests} == {"Bearer sk-judge"}
    for extraction, wrong in _cells(db_url, job_id):
        support = 0.5 if extraction.support == "unsupported" else 1.0
        if wrong:
            assert extraction.opinion == "split" and extraction.agreement == 0.0
            assert extraction.confidence == round(0.9 * support * 0.5, 4)
            assert extraction.status is ExtractionStatus.OK  # "lower" keeps the value
        else:
            assert extraction.opinion == "agreed"
            assert extraction.confidence == round(0.9 * support, 4)


@pytest.mark.parametrize(("kind", "a", "b", "same"), [
    (VariableType.NUMBER, 356.0, 356, True),
    (VariableType.NUMBER, 356.0, 363.0, False),
    (VariableType.DATE, "2021-03", "2021-03-15", True),
    (VariableType.DATE, "2021-03", "2021-04", False),
    (VariableType.CATEGORY, "Phase 2", "phase 2", True),
    (VariableType.CATEGORY, ["A", "B"], ["b", "a"], True),
    (VariableType.BOOLEAN, True, False, False),
    (VariableType.TEXT, "Norvale Pharmaceuticals Inc.", "Norvale Pharmaceuticals, Inc", True),
    (VariableType.TEXT, "Norvale Pharmaceuticals", "Kestrel Biotherapeutics", False),
    (VariableType.TEXT, None, None, True),
    (VariableType.NUMBER, None, 3.0, False),
])
def test_answers_agree_by_type(kind: VariableType, a: object, b: object, same: bool) -> None:
    assert same_answer(kind, a, b) is same


def test_extra_calls_per_document_follow_the_settings() -> None:
    settings = get_settings(second_opinion_samples=3, challenger_model="judge")
    assert extra_calls_per_document(settings, "per_document", 8) == 4
    assert extra_calls_per_document(settings, "per_variable", 8) == 32
