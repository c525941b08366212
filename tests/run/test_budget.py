"""The budget cap: a run stops starting calls before the cap, ends CANCELLED "budget
reached" with everything done kept, and resumes under a higher cap without redoing cells."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from config.settings import get_settings
from extraction import db
from extraction.models import Extraction, JobKind, ProcessingLog
from extraction.run.budget import Budget
from extraction.run.results import DocumentInput, DocumentResult
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm
from tests.cli_helpers import run_cli

DOCS = 12


@pytest.fixture
def llm(prefect_harness: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
        ) -> Iterator[FakeLLMServer]:
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  house-model: {input: 0.40, cached_input: 0.10, "
                      "output: 1.60}\n")
    with FakeLLMServer(model=None, count_request_schema=True, latency=0.02) as server:
        point_at_fake_llm(monkeypatch, server.base_url, llm_model="house-model",
                          llm_prices_file=str(prices), llm_concurrency=2)
        yield server


def _cells(db_url: str, job_id: str) -> tuple[int, int]:
    with db.session_scope(db_url) as s:
        rows = s.execute(select(Extraction.document_id, Extraction.variable_id)
                         .where(Extraction.job_id == uuid.UUID(job_id))).all()
    return len(rows), len(set(rows))


def test_the_cap_stops_the_run_on_time_and_resume_finishes_it(
        db_url: str, llm: FakeLLMServer) -> None:
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), DOCS)
    estimate = run_cli("run", "full", "trials", "--estimate", "--json").json()
    per_call = estimate["cost_sync_usd"] / estimate["calls"]
    cap = round(per_call * DOCS * 0.4, 8)  # about 40 % of the run
    noted = run_cli("run", "full", "trials", "--estimate", "--max-cost", str(cap), "--json")
    assert any("covers about 40% of this run" in n for n in noted.json()["notes"])

    stopped = run_cli("run", "full", "trials", "--max-cost", str(cap), "--json")
    assert stopped.exit_code == 12, stopped.stdout + stopped.stderr  # CANCELLED
    job = stopped.json()
    assert job["status"] == "CANCELLED" and job["error"].startswith("budget reached")
    assert job["parameters"]["max_cost_usd"] == cap
    # On time: spent at most the cap plus one call's worth, and the run did some work.
    assert job["cost_usd"] <= cap + 1.5 * per_call
    done = job["documents_completed"]
    assert 0 < done < DOCS and llm.total_requests == done
    assert _cells(db_url, job["id"]) == (done * 5, done * 5)  # every finished cell kept
    with db.session_scope(db_url) as s:
        events = list(s.scalars(select(ProcessingLog.event).where(
            ProcessingLog.job_id == uuid.UUID(job["id"]))))
    assert "budget_reached" in events
    shown = run_cli("job", "show", job["id"])
    assert "budget reached" in shown.stdout and f"cap ${cap:.4f}" in shown.stdout

    # Resuming needs a higher cap; with one, the job finishes and asks only the rest.
    same = run_cli("run", "resume", job["id"], "--json")
    assert same.exit_code == 4 and "higher cap" in same.json()["error"]["detail"]
    resumed = run_cli("run", "resume", job["id"], "--max-cost", str(cap * 10), "--json")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    final = resumed.json()
    assert final["status"] == "COMPLETE" and final["error"] is None
    assert final["documents_completed"] == DOCS and llm.total_requests == DOCS
    assert _cells(db_url, job["id"]) == (DOCS * 5, DOCS * 5)  # no cell twice
    assert final["cost_usd"] <= cap * 10
    assert final["summary"]["max_cost_usd"] == cap * 10


def test_a_cap_from_the_setting_applies_to_every_run(db_url: str, llm: FakeLLMServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), 4)
    monkeypatch.setenv("EXTRACTFLOW_MAX_COST_USD", "0.0000001")  # less than one call
    job = run_cli("run", "full", "trials", "--json").json()
    assert job["status"] == "CANCELLED" and job["error"].startswith("budget reached")
    assert llm.total_requests == 0 and job["documents_completed"] == 0


def _budget(cap: float) -> Budget:
    from extraction.llm.prices import Price
    from extraction.models import VariableType
    from extraction.run.results import PromptInfo, VariableInfo

    variable = VariableInfo(id=uuid.uuid4(), name="v", label="", type=VariableType.TEXT)
    prompt = PromptInfo(id=uuid.uuid4(), variable_id=variable.id, version=1,
                        system_template="s" * 400, user_template="u" * 400, max_tokens=100)
    budget = Budget(cap, Price(model="m", input=1.0, output=1.0), prompts={variable.id: prompt},
                    mode="per_document", instructor_mode="tools", settings=get_settings())
    budget.variables = [variable]  # type: ignore[attr-defined]
    return budget


def test_reservations_count_what_is_in_flight() -> None:
    budget = _budget(cap=1.0)
    doc = DocumentInput(id=uuid.uuid4(), filename="a.txt", text="text " * 100)
    one = budget.estimate(doc, budget.variables)  # type: ignore[attr-defined]
    budget.cap_usd = one * 2.5
    first = budget.reserve(doc, budget.variables)  # type: ignore[attr-defined]
    second = budget.reserve(doc, budget.variables)  # type: ignore[attr-defined]
    assert first and second and budget.in_flight_usd == pytest.approx(2 * one)
    # A third would pass the cap while the first two are still in flight.
    assert budget.reserve(doc, budget.variables) is None and budget.reached  # type: ignore
    budget.settle(first, DocumentResult(document_id=doc.id, llm_calls=1, tokens_out=10,
                                        cost_usd=one / 2))
    assert budget.spent_usd == pytest.approx(one / 2)
    assert budget.in_flight_usd == pytest.approx(one)
    assert "budget reached" in budget.reason


def test_spent_counts_cells_of_the_job(db_url: str) -> None:
    # A resumed job's cap is on its total: what it spent before counts (open_budget).
    from extraction.run.budget import open_budget
    from extraction.run.plan import load_plan
    from testing.run_factory import make_project as project_of

    with db.session_scope(db_url) as s:
        project = project_of(s)
        add_trial_documents(s, project, 2)
        from extraction.run.plan import create_run_job, snapshot_prompts

        job = create_run_job(s, get_settings(llm_model="gpt-4o-mini"), kind=JobKind.FULL,
                             project=project.name, max_cost_usd=0.5)
        job.cost_usd = 0.2
        snapshot_prompts(s, job)
        plan = load_plan(s, job)
    budget = open_budget(db.session_scope, plan, None, get_settings())
    assert budget is not None and budget.cap_usd == 0.5 and budget.spent_usd == 0.2
    assert open_budget(db.session_scope, plan, 0.9, get_settings()).cap_usd == 0.9  # type: ignore
    with db.session_scope(db_url) as s:
        assert s.scalar(select(func.count(Extraction.id))) == 0
