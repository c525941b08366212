"""Refinement that cannot make things worse: the held-out check and the rewrite checks.

Why these tests matter: a small model's rewrite can be worse than the prompt it replaces (the
bundled 135M model once stored "The document contains a short narrative…" as a prompt). A
rewrite must win — or at least tie — on reviewed documents it never saw, else it is refused
with both scores; a rewrite that is not an instruction for the same variable is refused with
the reason. The held-out documents are extracted again through the real Extractor and LLM
client against the fake server, scripted to answer worse (or better) to the rewritten prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy.orm import Session

from extraction import prompts
from extraction.review import feedback, holdout
from extraction.review.refine import refine_prompts, report_markdown, report_to_dict
from extraction.review.rewrite_checks import rewrite_problem
from testing.fake_llm_server import ChatRequest, FakeLLMServer, ScriptedResponder
from testing.review_factory import make_sample
from testing.run_factory import point_at_fake_llm
from tests.cli_helpers import run_cli

NEW_RULE = "- Report the phase named in the design section, not the one in the title."


class Rewriter:
    """An ``ask`` answering every rewrite request with the current block plus NEW_RULE."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def __call__(self, messages: list[dict[str, str]], model: type[BaseModel]) -> BaseModel:
        user = messages[-1]["content"]
        self.requests.append(user)
        block = user.split("<<<\n", 1)[1].split("\n>>>", 1)[0]
        return model(instruction_block=f"{block}\n{NEW_RULE}", rationale="design section")


def _answers(phase: str) -> Any:
    """A fake model that answers ``phase`` for the phase, and nothing else."""
    def respond(request: ChatRequest) -> Any:
        schema = request.schema or {}
        names = list(schema.get("properties") or {})
        if "value" in names:  # per_variable: the answer object itself
            return {"value": phase, "evidence": None, "confidence": 0.9}
        return {name: {"value": phase if name == "phase" else None, "evidence": None,
                       "confidence": 0.9} for name in names}
    return respond


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model="fake-model") as server:
        point_at_fake_llm(monkeypatch, server.base_url)
        yield server


def _reviewed(session: Session):  # type: ignore[no-untyped-def]
    """Six documents, all saying Phase 2; the held-out ones confirmed, the others corrected."""
    s = make_sample(session, {(i, "phase"): "Phase 2" for i in range(6)}, n_documents=6)
    for i in range(6):
        feedback.record_feedback(session, s.cells[(i, "phase")].id, is_correct=True)
    views = list(feedback.effective_feedback(session, s.project).values())
    learn, held = holdout.split_documents(views)
    assert len(held) == 2 and len(learn) == 4
    for i, doc in enumerate(s.documents):
        if doc.id in learn:
            feedback.record_feedback(session, s.cells[(i, "phase")].id, is_correct=False,
                                     corrected_value="Phase 3", comment="see the design")
    session.commit()
    held_names = sorted(d.filename for d in s.documents if d.id in held)
    return s, held_names


def test_a_rewrite_that_scores_worse_on_held_out_documents_is_refused(
        session: Session, llm: FakeLLMServer) -> None:
    s, held_names = _reviewed(session)
    scripted = ScriptedResponder(fallback=_answers("Phase 2"))
    scripted.when(NEW_RULE, _answers("Phase 1"))  # the rewritten prompt answers worse
    llm.responder = scripted
    ask = Rewriter()
    report = refine_prompts(session, "trials", ask, variables=["phase"])
    session.commit()
    [result] = report.results
    assert not result.ok
    assert "2 cell(s) of 2 document(s): 0/2 right with the refined prompt, 2/2 with the " \
           "current one" in result.error
    assert "not stored" in result.error and "--force" in result.error
    assert prompts.current_prompt(session, s.variables["phase"]).version == 1
    assert report.held_out_documents == held_names
    # the held-out documents were re-extracted with the rewrite, and never shown to the rewriter
    assert sum(NEW_RULE in r.user_text for r in llm.chat_requests) == 2
    assert not any(name in ask.requests[0] for name in held_names)
    assert "Corrections by reviewers (4):" in ask.requests[0]
    assert report_to_dict(report)["results"][0]["held_out"] == {
        "cells": 2, "current": 2, "refined": 0, "failed": 0, "documents": held_names,
        "passed": False}

    forced = refine_prompts(session, "trials", Rewriter(), variables=["phase"], force=True)
    session.commit()
    [kept] = forced.results
    assert kept.ok and kept.forced and kept.to_version == 2
    current = prompts.current_prompt(session, s.variables["phase"])
    assert current.version == 2 and "0/2 right with the refined prompt" in current.rationale
    assert "kept with --force" in report_markdown(forced)


def test_a_rewrite_that_does_at_least_as_well_becomes_current(
        session: Session, llm: FakeLLMServer) -> None:
    s, _ = _reviewed(session)
    llm.responder = _answers("Phase 2")  # the rewrite keeps the held-out answers right
    report = refine_prompts(session, "trials", Rewriter(), variables=["phase"])
    session.commit()
    [result] = report.results
    assert result.ok and result.held_out is not None and result.held_out.passed
    assert (result.held_out.current, result.held_out.refined) == (2, 2)
    assert prompts.current_prompt(session, s.variables["phase"]).version == 2


def test_the_cli_prints_both_scores_and_fails_when_refused(
        session: Session, llm: FakeLLMServer) -> None:
    _reviewed(session)
    scripted = ScriptedResponder(fallback=_answers("Phase 2"))
    scripted.when("Rewrite the instruction block of ONE variable", lambda request: {
        "instruction_block": request.user_text.split("<<<\n", 1)[1].split("\n>>>", 1)[0]
        + "\n" + NEW_RULE, "rationale": "design section"}, where="system")
    scripted.when(NEW_RULE, _answers("Phase 1"))
    llm.responder = scripted
    result = run_cli("prompt", "refine", "trials", "--variable", "phase")
    assert result.exit_code == 1
    assert "Held out to check the rewrites" in result.stdout
    assert "0/2 right with the refined prompt, 2/2 with the current one" in result.stdout


def test_fewer_than_four_reviewed_documents_keep_no_held_out_part(session: Session) -> None:
    s = make_sample(session, {(i, "phase"): "Phase 2" for i in range(3)}, n_documents=3)
    for i in range(3):
        feedback.record_feedback(session, s.cells[(i, "phase")].id, is_correct=False,
                                 corrected_value="Phase 3")
    views = list(feedback.effective_feedback(session, s.project).values())
    learn, held = holdout.split_documents(views)
    assert held == set() and len(learn) == 3
    report = refine_prompts(session, "trials", Rewriter(), variables=["phase"])
    assert report.held_out_documents == [] and report.results[0].held_out is None


BLOCK = """### Variable `primary_outcome`: Primary outcome
Type: TEXT (a string)
Instructions: The primary outcome measure, in at most one sentence.
Answer format:
- Answer with a JSON string."""


@pytest.mark.parametrize(("rewrite", "reason"), [
    (BLOCK + "\n- Report the measure named after 'primary outcome was'.", None),
    (("### Variable `primary_outcome`: Primary outcome\nThe document contains a short narrative "
      "that provides an explanation for why the codebook is necessary."), "not an instruction"),
    (BLOCK + "\nThe document contains a short narrative about the trial.",
     "describes the documents"),
    (BLOCK.replace("TEXT (a string)", "NUMBER (a number)"), "changed the variable's meaning"),
    ("### Variable `primary_outcome`\nType: TEXT (a string)\n- Answer with the sponsor's name.",
     "no longer mentions"),
])
def test_rewrites_that_are_not_instructions_for_the_variable_are_refused(
        rewrite: str, reason: str | None) -> None:
    problem = rewrite_problem(rewrite, BLOCK, name="primary_outcome", label="Primary outcome")
    if reason is None:
        assert problem is None
    else:
        assert problem is not None and reason in problem


def test_dropped_categories_are_refused() -> None:
    block = "### Variable `phase`: Phase\nType: CATEGORY\n- Answer with one of: \"Phase 1\""
    problem = rewrite_problem(block, block, name="phase", label="Phase",
                              categories=["Phase 1", "Phase 2"])
    assert problem is not None and "'Phase 2'" in problem
