"""The README's main command (``scripts/demo.py``) end to end, with the fake LLM as endpoint.

The demo itself never answers with scripted values: with no EXTRACTFLOW_LLM_BASE_URL it runs
the bundled local model. This test sets the endpoint to the fake server so that every CLI
step the demo chains (codebook apply, docs add, run sample, feedback, prompt refine,
scorecard, run full, export in every format) is exercised on each submission, quickly and
deterministically; a broken step fails here instead of on a new user's machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from testing.fake_llm_server import ChatRequest, FakeLLMServer, ScriptedResponder

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
CODEBOOK = ROOT / "examples" / "clinical_trials.codebook.yaml"


def _refinement(request: ChatRequest) -> dict[str, Any]:
    """Keep the block sent between <<< >>> and add one rule, as a careful model would."""
    block = request.user_text.split("<<<\n", 1)[1].split("\n>>>", 1)[0]
    return {"instruction_block": f"{block}\n- Prefer the value stated in the summary table.",
            "rationale": "The corrections took values from the wrong passage."}


@pytest.fixture
def llm() -> Iterator[FakeLLMServer]:
    responder = ScriptedResponder()
    responder.when("Rewrite the instruction block of ONE variable", _refinement, where="system")
    with FakeLLMServer(model=None, responder=responder) as server:
        yield server


def test_demo_runs_every_step_and_writes_every_export(tmp_path: Path,
                                                      llm: FakeLLMServer) -> None:
    out = tmp_path / "demo-output"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXTRACTFLOW_")}
    env.update({
        "EXTRACTFLOW_HOME": str(tmp_path / "home"),
        "EXTRACTFLOW_DEMO_OUTPUT": str(out),
        "EXTRACTFLOW_LLM_BASE_URL": llm.base_url,
        "EXTRACTFLOW_LLM_API_KEY": "sk-test",
        "EXTRACTFLOW_LLM_MODEL": "fake-model",
    })
    done = subprocess.run([sys.executable, "-m", "scripts.demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "Traceback" not in done.stdout + done.stderr
    for step in ("codebook apply", "docs add", "run sample", "prompt refine", "scorecard",
                 "run full", "export clinical-trials --format xlsx"):
        assert f"$ extractflow {step}" in done.stdout
    assert "Accuracy of the full run" in done.stdout
    assert "Ingested 20 files into 'clinical-trials': 20 parsed, 0 empty, 0 failed" \
        in done.stdout  # only the reports: the known answers live outside the corpus

    wide = pd.read_csv(out / "clinical-trials-csv-wide.csv")
    assert len(wide) == 20  # one row per document of the bundled corpus
    variables = yaml.safe_load(CODEBOOK.read_text())["variables"]
    assert [v["name"] for v in variables] == [c for c in wide.columns
                                              if c in {v["name"] for v in variables}]
    long = pd.read_csv(out / "clinical-trials-csv-long.csv")
    assert len(long) == 20 * len(variables)  # one row per document × variable
    assert pd.read_parquet(out / "clinical-trials-parquet.parquet").shape[0] == 20
    exported = json.loads((out / "clinical-trials-json.json").read_text())
    assert exported["export"]["project"] == "clinical-trials"
    assert len(exported["documents"]) == 20
    assert (out / "clinical-trials-xlsx.xlsx").stat().st_size > 0
    assert llm.total_requests >= 20 + 6  # a full run of 20 and a sample of 6, at least
