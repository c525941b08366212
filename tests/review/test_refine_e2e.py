"""The feedback loop end to end, through the fake LLM server and the real openai SDK.

sample run → reviewers mark values wrong → refine (the fake server answers the refinement
request with a rewritten block) → a new prompt version holds the corrections → a re-run uses
it (job snapshot), re-asks only the cells whose prompt changed, and — the fake server answering
correctly to the refined prompt — the scorecard shows the improvement, old vs new per cell.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from extraction import db, prompts
from extraction.models import Document, Extraction, ParseStatus, PromptOrigin, Variable
from extraction.review.scorecard import build_scorecard
from testing.fake_llm_server import ChatRequest, FakeLLMServer, SchemaResponder, ScriptedResponder
from testing.run_factory import make_project, point_at_fake_llm
from tests.cli_helpers import run_cli

NEW_RULE = ("- Report the phase of the trial this report is about, never the phase of an "
            "earlier pilot.")
PILOT = re.compile(r"An earlier Phase \d pilot preceded it\.")
# Document i states its own phase and (for 0 and 1) an earlier pilot whose phase comes first
# in the category list, so a literal first-match answer picks the pilot's phase: wrong.
TRIALS = [("Phase 3", "An earlier Phase 2 pilot preceded it."),
          ("Phase 3", "An earlier Phase 1 pilot preceded it."),
          ("Phase 2", "")]


def _text(i: int) -> str:
    phase, pilot = TRIALS[i]
    return (f"Report {i}. The trial was sponsored by Sponsor{i} Labs.\n"
            f"It is a {phase} study. {pilot}\n"
            f"In total {100 + i} participants were enrolled.\n"
            f"The trial started on 2024-0{i + 1}-15.\n"
            "Participants were randomised: yes.\n")


def _refinement(request: ChatRequest) -> dict[str, Any]:
    """The fake LLM's rewrite: the current block (sent between <<< >>>) plus one rule."""
    block = request.user_text.split("<<<\n", 1)[1].split("\n>>>", 1)[0]
    return {"instruction_block": f"{block}\n{NEW_RULE}",
            "rationale": "Two answers took the phase of an earlier pilot."}


def _follows_refined_rule(request: ChatRequest) -> Any:
    """A model that follows NEW_RULE: it reads the document without the pilot sentence."""
    return SchemaResponder().fill(request.schema or {}, PILOT.sub("", request.document))


@pytest.fixture
def llm(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    responder = ScriptedResponder()
    responder.when("Rewrite the instruction block of ONE variable", _refinement, where="system")
    responder.when(NEW_RULE, _follows_refined_rule)
    with FakeLLMServer(model="fake-model") as server:
        server.responder = responder
        point_at_fake_llm(monkeypatch, server.base_url,
                          global_concurrency_limit_name=f"xf-{uuid.uuid4().hex[:8]}")
        yield server


def _setup(db_url: str) -> list[str]:
    with db.session_scope(db_url) as s:
        project = make_project(s)
        ids = []
        for i in range(len(TRIALS)):
            text = _text(i)
            doc = Document(project_id=project.id, filename=f"trial{i}.txt", text=text,
                           content_hash=hashlib.sha256(text.encode()).hexdigest(),
                           page_offsets=[0], page_count=1, parse_status=ParseStatus.OK,
                           mime="text/plain", size_bytes=len(text))
            s.add(doc)
            s.flush()
            ids.append(str(doc.id))
        return ids


def _cells(db_url: str, job_id: str) -> dict[tuple[str, str], Extraction]:
    with db.session_scope(db_url) as s:
        rows = s.execute(
            select(Extraction, Document.filename, Variable.name)
            .join(Document, Document.id == Extraction.document_id)
            .join(Variable, Variable.id == Extraction.variable_id)
            .where(Extraction.job_id == uuid.UUID(job_id))).all()
        return {(f, v): e for e, f, v in rows}


def _artifact_keys(flow_run_id: str) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(flow_run_id)])))

    return {a.key for a in asyncio.run(read()) if a.key}


def test_feedback_refine_rerun_scorecard(db_url: str, llm: FakeLLMServer) -> None:
    from flows.refine_prompts import refine_prompts
    from flows.sample_run import sample_run

    doc_ids = _setup(db_url)

    # 1. A sample run with prompt v1: the pilot's phase is picked for trial0 and trial1.
    first = asyncio.run(sample_run(project="trials", document_ids=doc_ids))
    assert first["status"] == "COMPLETE"
    cells = _cells(db_url, first["id"])
    assert [cells[(f"trial{i}.txt", "phase")].value for i in range(3)] == [
        "Phase 2", "Phase 1", "Phase 2"]
    assert not any(k.endswith("-scorecard") for k in _artifact_keys(first["flow_run_id"]))

    # 2. Reviewers mark them (CLI): two wrong with the right value, two confirmed.
    comment = "this is the pilot's phase, not the trial's"
    for i in (0, 1):
        out = run_cli("feedback", "add", str(cells[(f"trial{i}.txt", "phase")].id),
                      "--value", "Phase 3", "--comment", comment)
        assert out.exit_code == 0, out.stderr
    assert run_cli("feedback", "add", str(cells[("trial2.txt", "phase")].id),
                   "--correct").exit_code == 0
    assert run_cli("feedback", "add", str(cells[("trial0.txt", "enrollment")].id),
                   "--correct").exit_code == 0

    # 3. A dry run shows the diff and stores nothing; the flow then stores v2.
    dry = run_cli("prompt", "refine", "trials", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "phase: v1 would become v2" in dry.stdout and f"+{NEW_RULE}" in dry.stdout
    assert "Left as they are (no new corrections): sponsor" in dry.stdout
    with db.session_scope(db_url) as s:
        assert [p.version for p in prompts.prompt_history(s, "trials", "phase")] == [1]

    report = refine_prompts(project="trials")
    assert [(r["variable"], r["from_version"], r["to_version"]) for r in report["results"]] \
        == [("phase", 1, 2)]
    assert "refine-trials" in _artifact_keys_of_latest_flow("refine-prompts")
    with db.session_scope(db_url) as s:
        v1, v2 = prompts.prompt_history(s, "trials", "phase")
        assert (v2.origin, v2.parent_id, v2.is_current) == (PromptOrigin.REFINED, v1.id, True)
        assert NEW_RULE in v2.user_template
        assert v2.user_template.count('Right answer: "Phase 3"') == 2
        assert comment in v2.user_template
        assert [e["wrong_value"] for e in v2.examples] == ["Phase 2", "Phase 1"]
        assert "Two answers took the phase of an earlier pilot." in v2.rationale
        assert "It is a Phase 3 study." in v2.examples[0]["excerpt"]
        assert [p.version for p in prompts.prompt_history(s, "trials", "sponsor")] == [1]
        v2_id = str(v2.id)
    refinement_calls = llm.total_requests - 3
    assert refinement_calls == 2  # the dry run and the flow: one request each, phase only

    # 4. The re-run uses v2 (snapshot) and re-asks only the phase cells.
    before = llm.total_requests
    second = asyncio.run(sample_run(project="trials", document_ids=doc_ids))
    assert second["status"] == "COMPLETE"
    snapshot = {e["variable"]: e for e in second["prompt_snapshot"]["variables"]}
    assert snapshot["phase"]["prompt_version"] == 2 and snapshot["phase"]["prompt_id"] == v2_id
    assert snapshot["sponsor"]["prompt_version"] == 1
    asked = llm.chat_requests[-(llm.total_requests - before):]
    assert len(asked) == 3 and all(NEW_RULE in r.user_text for r in asked)
    assert not any("`sponsor`" in r.user_text for r in asked)
    assert second["cells_reused"] == 3 * 4
    cells2 = _cells(db_url, second["id"])
    assert [cells2[(f"trial{i}.txt", "phase")].value for i in range(3)] == [
        "Phase 3", "Phase 3", "Phase 2"]
    assert cells2[("trial0.txt", "sponsor")].reused_from_id is not None
    assert cells2[("trial0.txt", "phase")].reused_from_id is None
    assert any(k.endswith("-scorecard") for k in _artifact_keys(second["flow_run_id"]))

    # 5. The scorecard shows the improvement, and the CLI shows old vs new per cell.
    with db.session_scope(db_url) as s:
        card = build_scorecard(s, "trials")
    phase = {v.version: v for v in card.versions if v.variable == "phase"}
    assert (phase[1].correct, phase[1].checked) == (1, 3)
    assert (phase[2].correct, phase[2].checked) == (3, 3)
    assert card.latest.job_id == uuid.UUID(second["id"])
    assert card.latest.counts("phase") == {"fixed": 2, "still_wrong": 0, "kept": 1,
                                           "broken": 0, "failed": 0}
    shown = run_cli("scorecard", "trials")
    assert shown.exit_code == 0, shown.stderr
    assert "33% (1/3)" in shown.stdout and "100% (3/3)" in shown.stdout
    assert "2 fixed, 2 kept" in shown.stdout
    lines = [ln for ln in shown.stdout.splitlines() if "trial1.txt" in ln and "phase" in ln]
    assert lines and "Phase 1 → Phase 3" in lines[0] and "v1→v2" in lines[0]
    assert "fixed" in lines[0]


def _artifact_keys_of_latest_flow(name: str) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[name])),
                sort=FlowRunSort.START_TIME_DESC, limit=1)

    runs = asyncio.run(read())
    return _artifact_keys(str(runs[0].id)) if runs else set()
