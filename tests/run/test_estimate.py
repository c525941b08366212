"""The run estimate (calls and tokens) and the cost guards built on it, on both databases."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from config.settings import get_settings
from extraction.models import VariableType
from extraction.run.estimate import calls_for_document, estimate_run
from extraction.run.results import PromptInfo, VariableInfo
from tests.cli_helpers import run_cli


def _prompt(variable: VariableInfo, block: str = "x" * 400) -> PromptInfo:
    return PromptInfo(id=uuid.uuid4(), variable_id=variable.id, version=1,
                      system_template="s" * 800, user_template=block, max_tokens=100)


def test_estimate_counts_chunks_and_modes() -> None:
    settings = get_settings(llm_context_tokens=2000, llm_chunk_overlap_tokens=100)
    variables = [VariableInfo(id=uuid.uuid4(), name=f"v{i}", label="", type=VariableType.TEXT)
                 for i in range(3)]
    prompts = {v.id: _prompt(v) for v in variables}
    short = estimate_run(variables, prompts, "per_document", [400, 400], settings)
    assert short.calls == 2 and short.largest_document_calls == 1
    per_variable = estimate_run(variables, prompts, "per_variable", [400, 400], settings)
    assert per_variable.calls == 6 and per_variable.tokens_out == 6 * 100
    # 50 MB of text: hundreds of chunk calls for one document.
    huge = estimate_run(variables, prompts, "per_document", [50_000_000], settings)
    assert huge.calls > 1000 and huge.tokens_in > 12_000_000
    assert calls_for_document(10, 100, settings) == 1


def test_a_huge_run_needs_allow_large(db_url: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACTFLOW_RUN_CONFIRM_CALLS", "50")
    monkeypatch.setenv("EXTRACTFLOW_LLM_CONTEXT_TOKENS", "2000")
    assert run_cli("project", "create", "big").exit_code == 0
    assert run_cli("variable", "add", "big", "sponsor", "-t", "TEXT").exit_code == 0
    (tmp_path / "huge.txt").write_text("word " * 60_000)  # 300 kB: ~40 chunks of 2,000 tokens
    (tmp_path / "small.txt").write_text("Acme sponsored it.")
    assert run_cli("docs", "add", "big", str(tmp_path / "huge.txt"), str(tmp_path / "small.txt"),
                   "--no-flow").exit_code == 0
    refused = run_cli("run", "full", "big", "--json")
    assert refused.exit_code == 4, refused.stdout + refused.stderr
    error = refused.json()["error"]
    assert "--allow-large" in error["detail"] and error["estimate"]["calls"] > 50
    assert run_cli("job", "list", "big", "--json").json() == []  # nothing was created
    # With the flag the guard lets it through (to the launch, which has no server here).
    allowed = run_cli("run", "full", "big", "--allow-large", "--deployment", "--json")
    assert allowed.exit_code == 7, allowed.stdout + allowed.stderr  # the launch, not the guard
    assert "deploy" in allowed.json()["error"]["detail"]


def test_codebook_apply_rejects_a_prompt_that_cannot_fit(db_url: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setenv("EXTRACTFLOW_LLM_CONTEXT_TOKENS", "4000")
    categories = "\n".join(f"      - category number {i}" for i in range(2000))
    path = tmp_path / "wide.yaml"
    path.write_text("project:\n  name: wide\nvariables:\n  - name: kind\n    type: CATEGORY\n"
                    f"    categories:\n{categories}\n")
    result = run_cli("codebook", "apply", str(path), "--json")
    assert result.exit_code == 4, result.stdout + result.stderr
    error = result.json()["error"]
    assert error["field"] == "kind" and "alone needs" in error["detail"]
    assert "wide" not in str(run_cli("project", "list", "--json").json())  # rolled back
