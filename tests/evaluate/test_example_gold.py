"""The demo corpus's gold file is its known answers, and reads without a problem."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from examples.clinical_trials_corpus import RECORDS, write_gold_csv
from extraction import codebook
from extraction.codebook.file import apply_codebook, load_codebook
from extraction.evaluate.gold import load_gold
from testing.extraction_factory import add_document

ROOT = Path(__file__).resolve().parents[2]
GOLD = ROOT / "examples" / "clinical_trials.gold.csv"


def test_the_committed_gold_file_is_what_the_command_writes(tmp_path: Path) -> None:
    assert write_gold_csv(tmp_path / "gold.csv").read_text() == GOLD.read_text()


def test_the_gold_file_reads_cleanly_against_the_codebook(session: Session) -> None:
    apply_codebook(session, load_codebook(ROOT / "examples" / "clinical_trials.codebook.yaml"))
    project = codebook.get_project(session, "clinical-trials")
    for record in RECORDS:
        add_document(session, project, record.filename)
    gold = load_gold(session, project, GOLD, codebook.list_variables(session, project))
    assert gold.problems == [] and len(gold.cells) == 20 * 8
    first = {c.variable: c.value for c in gold.cells if c.row == 2}
    assert first["enrollment"] == 40.0 and first["randomized"] is False
    assert first["start_date"] == "2021-11" and first["phase"] == "Phase 3"
