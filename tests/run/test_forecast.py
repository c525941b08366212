"""`run … --estimate` against what the run then used, counted by the fake server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from extraction import db
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm
from tests.cli_helpers import run_cli

FORECAST_KEYS = {
    "project", "kind", "model", "mode", "documents", "documents_to_do", "cells_reused", "calls",
    "tokens_in", "tokens_out", "tokens_cached", "cache_share", "output_basis", "token_counter",
    "concurrency", "seconds_per_call", "latency_basis", "wall_seconds", "price", "price_known",
    "cost_sync_usd", "cost_batch_usd", "cost_cached_usd", "notes",
}


@pytest.fixture
def llm(prefect_harness: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
        ) -> Iterator[FakeLLMServer]:
    """The fake server billing the request's schema too (as providers do), any model name;
    runs use ``house-model``, priced by a price file without a cache minimum."""
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  house-model: {input: 0.40, cached_input: 0.10, "
                      "output: 1.60, batch_discount: 0.5}\n")
    with FakeLLMServer(model=None, count_request_schema=True) as server:
        point_at_fake_llm(monkeypatch, server.base_url, llm_model="house-model",
                          llm_prices_file=str(prices))
        yield server


def _estimate(*args: str) -> dict:
    result = run_cli("run", *args, "--estimate", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    return result.json()


def _within(estimated: float, measured: float, share: float = 0.10) -> bool:
    return abs(estimated - measured) <= share * measured


@pytest.mark.parametrize("mode", ["per_document", "per_variable"])
def test_the_estimate_is_within_ten_percent_of_what_the_run_used(
        db_url: str, llm: FakeLLMServer, mode: str) -> None:
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), 12)
    sample = _estimate("sample", "trials", "--n", "4", "--seed", "3", "--mode", mode)
    assert sample.keys() == FORECAST_KEYS
    assert sample["documents_to_do"] == 4 and "max_tokens" in sample["output_basis"]
    assert llm.total_requests == 0  # no LLM call
    assert run_cli("job", "list", "trials", "--json").json() == []  # no job
    ran = run_cli("run", "sample", "trials", "--n", "4", "--seed", "3", "--mode", mode,
                  "--json")
    assert ran.exit_code == 0, ran.stderr
    used = llm.usage_totals
    assert sample["calls"] == llm.total_requests
    assert _within(sample["tokens_in"], used["prompt_tokens"])
    assert sample["tokens_out"] >= used["completion_tokens"]  # the schema's max: a bound

    # The full run after the sample: its 4 documents are re-used, the output is now the
    # project's observed average, and both token counts land within 10 %.
    full = _estimate("full", "trials", "--mode", mode)
    assert full["documents"] == 12 and full["documents_to_do"] == 8
    assert full["cells_reused"] == 4 * 5 and "observed" in full["output_basis"]
    assert full["latency_basis"].startswith("observed")
    llm.reset()
    job = run_cli("run", "full", "trials", "--mode", mode, "--json").json()
    used = llm.usage_totals
    assert job["status"] == "COMPLETE" and full["calls"] == llm.total_requests
    assert _within(full["tokens_in"], used["prompt_tokens"])
    assert _within(full["tokens_out"], used["completion_tokens"])
    # The shared prefix the fake server's prompt cache reported, roughly as estimated.
    assert used["cached_tokens"] > 0
    assert _within(full["tokens_cached"], used["cached_tokens"], 0.25)
    price = full["price"]
    assert full["cost_sync_usd"] == pytest.approx(
        (full["tokens_in"] * price["input_per_million"]
         + full["tokens_out"] * price["output_per_million"]) / 1e6, rel=1e-3)
    assert full["cost_batch_usd"] == pytest.approx(full["cost_sync_usd"] / 2, rel=1e-3)
    assert full["cost_cached_usd"] < full["cost_sync_usd"]
    # The run's own cost prices its cached tokens at the cached rate, and says its hit share.
    assert job["cost_usd"] == pytest.approx(
        ((job["tokens_in"] - job["tokens_cached"]) * 0.40 + job["tokens_cached"] * 0.10
         + job["tokens_out"] * 1.60) / 1e6)
    assert job["summary"]["cache_hit_share"] == pytest.approx(
        job["tokens_cached"] / job["tokens_in"], abs=1e-4)


def test_an_unchanged_project_estimates_nothing_to_do(db_url: str, llm: FakeLLMServer) -> None:
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), 3)
    assert run_cli("run", "full", "trials", "--json").exit_code == 0
    again = _estimate("full", "trials")
    assert again["documents_to_do"] == 0 and again["calls"] == 0
    assert again["cost_sync_usd"] == 0.0 and again["cells_reused"] == 15


def test_second_opinions_are_counted_in_the_estimate(
        db_url: str, llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Self-consistency samples and a challenger cost calls: the estimate says how many, and
    the run makes that many."""
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), 4)
    plain = _estimate("full", "trials")
    monkeypatch.setenv("EXTRACTFLOW_SECOND_OPINION_SAMPLES", "2")
    monkeypatch.setenv("EXTRACTFLOW_CHALLENGER_MODEL", "house-model")
    asked = _estimate("full", "trials")
    assert plain["calls"] == 4 and asked["calls"] == 4 * (1 + 2 + 1)
    assert asked["tokens_in"] == 4 * plain["tokens_in"]
    assert any("second opinions add 12" in note for note in asked["notes"])
    ran = run_cli("run", "full", "trials", "--json")
    assert ran.exit_code == 0, ran.stderr
    assert llm.total_requests == asked["calls"] and ran.json()["llm_calls"] == asked["calls"]


def test_an_unknown_price_gives_tokens_only(db_url: str, llm: FakeLLMServer, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACTFLOW_LLM_MODEL", "mystery-model")
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), 3)
    data = _estimate("full", "trials")
    assert data["price_known"] is False and data["price"] is None
    assert data["cost_sync_usd"] is None and data["cost_batch_usd"] is None
    assert data["tokens_in"] > 0 and data["calls"] == 3
    human = run_cli("run", "full", "trials", "--estimate")
    assert human.exit_code == 0
    assert "No price for model 'mystery-model': tokens only" in human.stdout
    assert "cost sync       unknown price" in human.stdout
    # A cap cannot work without a price: refused before any job exists.
    capped = run_cli("run", "full", "trials", "--max-cost", "1", "--json")
    assert capped.exit_code == 4 and "needs the price of model 'mystery-model'" in \
        capped.json()["error"]["detail"]
    assert run_cli("job", "list", "trials", "--json").json() == []
    # Without a cap the run goes on, and its cost says it is unknown.
    job = run_cli("run", "full", "trials", "--json").json()
    assert job["status"] == "COMPLETE" and job["cost_usd"] is None
    assert job["summary"]["cost"] == "unknown price"
    shown = run_cli("job", "show", job["id"])
    assert "cost unknown price" in shown.stdout
    # The export's metadata says so too.
    out = tmp_path / "data.json"
    assert run_cli("export", "trials", "--format", "json", "-o", str(out)).exit_code == 0
    exported = json.loads(out.read_text())["export"]["jobs"]
    assert [j["cost"] for j in exported] == ["unknown price"]
    assert exported[0]["cost_usd"] is None and "tokens_cached" in exported[0]


@pytest.mark.parametrize("mode, instructor_mode", [("per_document", "tools"),
                                                   ("per_variable", "json")])
def test_a_long_documents_calls_are_rendered_as_the_extractor_sends_them(
        mode: str, instructor_mode: str) -> None:
    """Chunks of a long document, in two modes and two request shapes: the calls the
    estimate renders are the requests the fake server receives, token for token."""
    import asyncio
    import uuid as _uuid

    from config.settings import get_settings
    from extraction.llm.client import LLMClient
    from extraction.run.extractor import Extractor
    from extraction.run.forecast import document_calls
    from extraction.run.results import DocumentInput
    from tests.run.test_extractor import PROMPTS, REPORT, VARIABLES

    variables = VARIABLES[:3]
    prompts = {v.id: PROMPTS[v.id] for v in variables}
    text = REPORT * 60  # ~25,000 characters: several chunks of a 3,000-token window
    with FakeLLMServer(model=None, count_request_schema=True) as server:
        settings = get_settings(llm_base_url=server.base_url, llm_api_key="sk-test",
                                llm_model="house-model", llm_context_tokens=3000,
                                llm_instructor_mode=instructor_mode)
        estimated = document_calls(text, variables, prompts, mode=mode,
                                   instructor_mode=instructor_mode, settings=settings)

        async def go() -> None:
            client = LLMClient.from_settings(settings)
            try:
                await Extractor(client, mode=mode, settings=settings).extract_document(
                    DocumentInput(_uuid.uuid4(), "long.txt", text), variables, prompts)
            finally:
                await client.aclose()

        asyncio.run(go())
        assert len(estimated.calls) == server.total_requests > len(variables)
        assert estimated.tokens_in == server.usage_totals["prompt_tokens"]
