"""`extractflow evaluate` and `extractflow compare` on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from extraction import codebook, db
from testing.extraction_factory import Cell, add_job
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm
from tests.cli_helpers import run_cli
from tests.evaluate.conftest import Evaluated


def test_evaluate_prints_the_table_and_writes_the_report(evaluated: Evaluated,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    result = run_cli("evaluate", evaluated.project, "--gold", str(evaluated.gold), "--out",
                     str(out))
    assert result.exit_code == 0, result.stderr
    assert "24 cells in 6 documents against gold.csv" in result.stdout
    assert "Wrote " in result.stdout and out.exists()
    assert out.with_name("report.reliability.png").exists()
    assert "AUROC" in result.stdout and "5% →" in result.stdout
    data = run_cli("evaluate", evaluated.project, "--gold", str(evaluated.gold),
                   "--json").json()
    phase = next(v for v in data["variables"] if v["variable"] == "phase")
    assert (phase["correct"], phase["wrong"], phase["omission"], phase["hallucination"]) == \
        (3, 1, 1, 1)
    assert data["bootstrap"]["resamples"] == 1000 and data["gold"]["problems"] == []


def test_gold_problems_warn_or_stop_with_strict(evaluated: Evaluated, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,phase\ndoc000.txt,Phase 7\nghost.txt,Phase 1\n"
                   "doc001.txt,Phase 2\n", encoding="utf-8")
    warned = run_cli("evaluate", evaluated.project, "--gold", str(bad))
    assert warned.exit_code == 0
    assert "warning: gold row 2, column 'phase': 'Phase 7' is not a valid value" \
        in warned.stderr
    assert "warning: gold row 3, column 'filename': no document named 'ghost.txt'" \
        in warned.stderr
    strict = run_cli("evaluate", evaluated.project, "--gold", str(bad), "--strict", "--json")
    assert strict.exit_code == 4
    problem = strict.json()["error"]
    assert "2 problem(s)" in problem["detail"] and len(problem["errors"]) == 2
    missing = run_cli("evaluate", evaluated.project, "--gold", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 4 and "no gold file" in missing.stderr
    assert "Traceback" not in warned.stderr + strict.stdout + missing.stderr


def test_compare_two_jobs(session: Session, evaluated: Evaluated) -> None:
    project = codebook.get_project(session, evaluated.project)
    docs = evaluated.documents
    second = add_job(session, project, {
        (docs[0], "phase"): Cell("phase 1", confidence=0.9),  # same, other spelling
        (docs[1], "phase"): Cell("Phase 3", confidence=0.99),  # differs, very confident
        (docs[2], "phase"): Cell("Phase 1", confidence=0.5),
        (docs[0], "enrollment"): Cell(100.0), (docs[1], "enrollment"): Cell(250.0),
        (docs[0], "start_date"): Cell("2021-03"),  # coarser, agrees at that precision
    })
    session.commit()
    data = run_cli("compare", evaluated.job_id, str(second.id)[:8], "--json").json()
    by_name = {v["variable"]: v for v in data["variables"]}
    assert (by_name["phase"]["cells"], by_name["phase"]["agree"]) == (3, 2)
    assert (by_name["enrollment"]["cells"], by_name["enrollment"]["agree"]) == (2, 1)
    assert by_name["start_date"]["agree"] == 1 and by_name["sponsor"]["cells"] == 0
    assert data["differences_total"] == 2
    first = data["differences"][0]
    assert (first["filename"], first["variable"], first["value_b"]) == \
        ("doc001.txt", "phase", "Phase 3")  # the most confident disagreement first
    human = run_cli("compare", evaluated.job_id, str(second.id), "--top", "1")
    assert human.exit_code == 0 and "1 of 2 differing cells" in human.stdout
    same = run_cli("compare", evaluated.job_id, evaluated.job_id)
    assert same.exit_code == 4 and "two different jobs" in same.stderr


@pytest.fixture
def llm(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model="fake-model") as server:
        point_at_fake_llm(monkeypatch, server.base_url)
        yield server


def test_evaluate_a_run_through_the_fake_llm(db_url: str, llm: FakeLLMServer,
                                             tmp_path: Path) -> None:
    """A real run (Prefect, HTTP, the openai SDK) and then its evaluation from the CLI."""
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), 4)
    run = run_cli("run", "full", "trials", "--json")
    assert run.exit_code == 0, run.stderr
    gold = tmp_path / "gold.csv"
    gold.write_text("filename,phase,randomised\n" + "".join(
        f"trial{i:04d}.txt,Phase {i % 3 + 1},yes\n" for i in range(4)), encoding="utf-8")
    result = run_cli("evaluate", "trials", "--gold", str(gold), "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["cells"] == 8 and data["documents"] == 4
    by_name = {v["variable"]: v for v in data["variables"]}
    assert by_name["phase"]["accuracy"]["value"] == 1.0  # "It is a Phase N study."
    assert by_name["randomised"]["correct"] == 4  # "Participants were randomised: yes."
    assert by_name["sponsor"]["gold_cells"] == 0
    (job,) = data["jobs"]
    assert job["job_id"] == run.json()["id"] and job["model"] == "fake-model"
    assert job["mode"] == "per_document" and job["tokens_in"] > 0
