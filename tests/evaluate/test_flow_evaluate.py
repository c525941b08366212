"""The ``evaluate`` flow under Prefect's test harness, and its deployment in prefect.yaml."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import yaml
from prefect.artifacts import Artifact
from sqlalchemy.orm import Session

from flows.evaluate import evaluate
from tests.evaluate.conftest import Evaluated

ROOT = Path(__file__).resolve().parents[2]


def test_flow_returns_the_evaluation_and_leaves_the_report_artifact(
        prefect_harness: None, session: Session, evaluated: Evaluated, tmp_path: Path) -> None:
    out = tmp_path / "appendix.html"
    result = asyncio.run(evaluate(evaluated.project, gold=str(evaluated.gold), out=str(out)))
    assert result["cells"] == 24 and result["files"][0] == str(out) and out.exists()
    artifact = Artifact.get("evaluation-trials")
    assert artifact is not None
    assert "## Results per variable" in artifact.data and "| `phase` | CATEGORY | 6 |" \
        in artifact.data


def test_flow_fails_clearly_on_a_strict_gold_problem(
        prefect_harness: None, session: Session, evaluated: Evaluated, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,phase\nghost.txt,Phase 1\n", encoding="utf-8")
    state = asyncio.run(evaluate(evaluated.project, gold=str(bad), strict=True,
                                 return_state=True))
    assert state.is_failed()
    assert "no document named 'ghost.txt'" in str(state.result(raise_on_failure=False))


def test_the_deployment_points_at_the_flow_and_documents_its_parameters() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployment = next(d for d in config["deployments"] if d["name"] == "evaluate")
    path, name = deployment["entrypoint"].split(":")
    assert (ROOT / path).exists() and name == evaluate.fn.__name__
    assert deployment["work_pool"]["name"] == "extractflow"
    parameters = set(inspect.signature(evaluate.fn).parameters)
    assert set(deployment.get("parameters", {})) <= parameters
    text = (ROOT / "prefect.yaml").read_text().split("- name: evaluate")[0]
    documented = text.rsplit("# evaluate:", 1)[1]
    for parameter in parameters:
        assert f"#   {parameter}" in documented, parameter
