"""Gold files: wide and long, CSV and XLSX, and a clear message per problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy.orm import Session

from extraction import codebook
from extraction.errors import ValidationError
from extraction.evaluate.gold import gold_from_feedback, load_gold
from extraction.review.feedback import record_feedback
from testing.extraction_factory import Cell, add_documents, add_job, make_project


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def project(session: Session):
    project = make_project(session)
    add_documents(session, project, 3)
    session.commit()
    return project


def _load(session: Session, project, path: Path, **kwargs):
    return load_gold(session, project, path, codebook.list_variables(session, project), **kwargs)


def test_a_wide_csv_gives_typed_gold_values(session: Session, project, tmp_path: Path) -> None:
    path = _write(tmp_path / "gold.csv",
                  "filename,phase,enrollment,start_date,randomised,sponsor\n"
                  "doc000.txt,phase 2,\"1,200\",2021-03,yes,Acme Labs\n"
                  "doc001.txt,Phase 3,,March 2020,no,\n")
    gold = _load(session, project, path)
    assert gold.shape == "wide" and gold.problems == []
    values = {(c.row, c.variable): c.value for c in gold.cells}
    assert values[(2, "phase")] == "Phase 2" and values[(2, "enrollment")] == 1200.0
    assert values[(2, "start_date")] == "2021-03" and values[(2, "randomised")] is True
    assert values[(3, "start_date")] == "2020-03" and values[(3, "enrollment")] is None
    assert values[(3, "sponsor")] is None  # an empty cell: "not stated"
    assert len(gold.cells) == 10


def test_every_problem_is_named_with_its_row_and_column(session: Session, project,
                                                       tmp_path: Path) -> None:
    path = _write(tmp_path / "gold.csv",
                  "filename,phase,enrollment,colour\n"
                  "doc000.txt,Phase 9,12,red\n"
                  "ghost.txt,Phase 1,3,blue\n"
                  "doc001.txt,Phase 1,12 or 13,\n"
                  "doc000.txt,Phase 2,14,\n"
                  "doc002.txt,Phase 3,15,\n")
    gold = _load(session, project, path)
    problems = [(p.row, p.column, p.message) for p in gold.problems]
    assert (1, "colour", "no variable 'colour' in the project; the column is skipped") \
        in problems
    assert any(r == 2 and c == "phase" and "'Phase 9'" in m for r, c, m in problems)
    assert any(r == 3 and c == "filename" and "no document named 'ghost.txt'" in m
               for r, c, m in problems)
    assert any(r == 4 and c == "enrollment" and "NUMBER" in m for r, c, m in problems)
    assert any(r == 5 and c == "enrollment" and "the first is on row 2" in m
               for r, c, m in problems)
    # row 5 repeats row 2's document: its enrollment is a duplicate; its phase is the first
    # readable one (row 2's did not parse)
    assert len(problems) == 5
    # the rest is evaluated: doc000 enrollment, doc001 phase, doc002 both
    assert sorted((c.row, c.variable) for c in gold.cells) == [
        (2, "enrollment"), (4, "phase"), (5, "phase"), (6, "enrollment"), (6, "phase")]
    with pytest.raises(ValidationError) as error:
        _load(session, project, path, strict=True)
    assert "5 problem(s)" in error.value.detail and len(error.value.extra["errors"]) == 5


def test_a_long_xlsx_by_document_id(session: Session, project, tmp_path: Path) -> None:
    docs = sorted(project.documents, key=lambda d: d.filename)
    book = Workbook()
    sheet = book.active
    sheet.append(["document_id", "variable", "value"])
    sheet.append([str(docs[0].id), "enrollment", 40])
    sheet.append([str(docs[1].id), "randomised", "false"])
    sheet.append(["not-an-id", "enrollment", 3])
    sheet.append([str(docs[2].id), "nothing", 3])
    sheet.append([None, None, None])  # blank rows at the end of a sheet are ignored
    book.save(tmp_path / "gold.xlsx")
    gold = _load(session, project, tmp_path / "gold.xlsx")
    assert gold.shape == "long"
    assert [(c.variable, c.value) for c in gold.cells] == [("enrollment", 40.0),
                                                           ("randomised", False)]
    assert [(p.row, p.column) for p in gold.problems] == [(4, "document_id"), (5, "variable")]
    assert "no document with id 'not-an-id'" in gold.problems[0].message


def test_unreadable_gold_files_are_clear_errors(session: Session, project,
                                                tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no gold file"):
        _load(session, project, tmp_path / "missing.csv")
    with pytest.raises(ValidationError, match=r"\.csv or \.xlsx"):
        _load(session, project, _write(tmp_path / "gold.json", "{}"))
    with pytest.raises(ValidationError, match="needs a 'document_id' or 'filename' column"):
        _load(session, project, _write(tmp_path / "gold.csv", "name,phase\nx,Phase 1\n"))
    with pytest.raises(ValidationError, match="is empty"):
        _load(session, project, _write(tmp_path / "empty.csv", ""))


def test_reviewed_cells_are_gold_too(session: Session, project) -> None:
    docs = sorted(project.documents, key=lambda d: d.filename)
    job = add_job(session, project, {(docs[0], "enrollment"): 40, (docs[1], "enrollment"): 50,
                                     (docs[2], "enrollment"): Cell(None)})
    by_doc = {e.document_id: e for e in job.extractions}
    record_feedback(session, by_doc[docs[0].id], is_correct=True)
    record_feedback(session, by_doc[docs[1].id], is_correct=False, corrected_value="55")
    session.commit()
    gold = gold_from_feedback(session, project, codebook.list_variables(session, project))
    assert sorted((c.document_id, c.value) for c in gold.cells) == sorted(
        [(str(docs[0].id), 40), (str(docs[1].id), 55.0)])
