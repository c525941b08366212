"""The review workbook: export shape, round trip, all-or-nothing import, bad workbooks."""

from __future__ import annotations

import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from extraction.errors import StateError, ValidationError
from extraction.models import ExtractionFeedback
from extraction.review import feedback
from extraction.review.workbook import COLUMNS, REVIEW_SHEET
from extraction.review.workbook_export import export_review_workbook
from extraction.review.workbook_import import import_review_workbook
from testing.review_factory import add_job, make_sample

HEADERS = [h for _, h in COLUMNS]
COL = {h: i + 1 for i, h in enumerate(HEADERS)}


def _count(session: Session) -> int:
    return session.scalar(select(func.count(ExtractionFeedback.id))) or 0


def _fill(path: Path, answers: dict[tuple[str, str], tuple[Any, Any, Any]]) -> None:
    """Type verdicts into the Review sheet as a reviewer would (by document and variable)."""
    wb = load_workbook(path)
    ws = wb[REVIEW_SHEET]
    done = set()
    for r in range(2, ws.max_row + 1):
        key = (ws.cell(r, COL["document"]).value, ws.cell(r, COL["variable"]).value)
        if key in answers:
            for header, value in zip(("correct?", "corrected value", "comment"), answers[key]):
                ws.cell(r, COL[header]).value = value
            done.add(key)
    assert done == set(answers), f"rows not found: {set(answers) - done}"
    wb.save(path)


def _row_of(path: Path, document: str, variable: str) -> int:
    ws = load_workbook(path)[REVIEW_SHEET]
    for r in range(2, ws.max_row + 1):
        if (ws.cell(r, COL["document"]).value, ws.cell(r, COL["variable"]).value) == (
                document, variable):
            return r
    raise AssertionError("no such row")


def test_export_has_one_row_per_extraction_with_dropdowns(session: Session, tmp_path: Path) -> None:
    s = make_sample(session)
    s.cells[(1, "sponsor")].evidence_quote = '=HYPERLINK("http://evil","x")'
    session.commit()
    out = export_review_workbook(session, s.job.id, tmp_path / "sub" / "review.xlsx")
    assert out.rows == 15 and out.prefilled == 0 and out.path.exists()

    wb = load_workbook(out.path)
    assert wb.sheetnames[0] == REVIEW_SHEET
    ws = wb[REVIEW_SHEET]
    assert [c.value for c in ws[1]] == HEADERS
    assert ws.max_row == 16
    assert ws.column_dimensions["A"].hidden and ws.protection.sheet
    assert ws.cell(2, COL["correct?"]).protection.locked is False
    assert ws.cell(2, COL["extracted value"]).protection.locked is True
    first = [ws.cell(2, COL[h]).value for h in ("document", "variable", "extracted value",
                                                 "confidence", "page")]
    assert first == ["doc0.txt", "sponsor", "Acme 0", 0.9, 1]
    evil = ws.cell(_row_of(out.path, "doc1.txt", "sponsor"), COL["evidence quote"])
    assert evil.value.startswith("=HYPERLINK") and evil.data_type == "s"
    with zipfile.ZipFile(out.path) as z:
        assert "<f>" not in z.read("xl/worksheets/sheet1.xml").decode()

    formulas = {dv.formula1: str(dv.sqref) for dv in ws.data_validations.dataValidation}
    assert '"yes,no"' in formulas
    lists = wb["Lists"]
    assert lists.sheet_state == "hidden"
    phase_range = next(f for f in formulas if f.startswith("'Lists'!$A"))
    assert [lists.cell(r, 1).value for r in range(2, 5)] == ["Phase 1", "Phase 2", "Phase 3"]
    phase_rows = {_row_of(out.path, f"doc{i}.txt", "phase") for i in range(3)}
    assert {int(c[1:]) for c in formulas[phase_range].split()} == phase_rows


def test_round_trip_and_double_import(session: Session, tmp_path: Path) -> None:
    s = make_sample(session)
    path = export_review_workbook(session, s.job.id, tmp_path / "review.xlsx").path
    _fill(path, {
        ("doc0.txt", "enrollment"): ("no", "1,250", "counted screened, not enrolled"),
        ("doc1.txt", "phase"): (None, "Phase 3", None),  # a correction alone means "no"
        ("doc2.txt", "sponsor"): ("yes", None, None),
        ("doc0.txt", "start_date"): ("No", datetime(2019, 5, 1), ""),  # Excel turned it into a date
        ("doc1.txt", "randomised"): ("no", None, "not stated anywhere"),
    })
    report = import_review_workbook(session, path)
    session.commit()
    assert (report.created, report.updated, report.unchanged) == (5, 0, 0)
    assert report.blank == 10 and report.rows == 15
    by_cell = {(v.filename, v.variable): v for v in feedback.list_feedback(session, "trials")}
    assert by_cell[("doc0.txt", "enrollment")].corrected_value == 1250
    assert by_cell[("doc0.txt", "enrollment")].comment == "counted screened, not enrolled"
    assert by_cell[("doc1.txt", "phase")].is_correct is False
    assert by_cell[("doc2.txt", "sponsor")].is_correct is True
    assert by_cell[("doc0.txt", "start_date")].corrected_value == "2019-05-01"
    assert by_cell[("doc1.txt", "randomised")].corrected_value is None
    assert {v.source for v in by_cell.values()} == {"workbook"}

    again = import_review_workbook(session, path)
    session.commit()
    assert (again.created, again.updated, again.unchanged) == (0, 0, 5)
    assert _count(session) == 5

    # A re-export shows the verdicts; changing one updates it, nothing is duplicated.
    path2 = export_review_workbook(session, s.job.id, tmp_path / "again.xlsx")
    assert path2.prefilled == 5
    ws = load_workbook(path2.path)[REVIEW_SHEET]
    row = _row_of(path2.path, "doc0.txt", "enrollment")
    assert [ws.cell(row, COL[h]).value for h in ("correct?", "corrected value")] == ["no", "1250"]
    _fill(path2.path, {("doc0.txt", "enrollment"): ("no", "1240", "typo")})
    third = import_review_workbook(session, path2.path)
    session.commit()
    assert (third.created, third.updated, third.unchanged) == (0, 1, 4)
    assert _count(session) == 5


def test_invalid_rows_are_all_reported_and_nothing_is_imported(
    session: Session, tmp_path: Path
) -> None:
    s = make_sample(session)
    path = export_review_workbook(session, s.job.id, tmp_path / "review.xlsx").path
    _fill(path, {
        ("doc0.txt", "sponsor"): ("yes", None, None),  # fine on its own
        ("doc0.txt", "enrollment"): ("no", "lots", None),
        ("doc1.txt", "phase"): ("no", "Phase 9", None),
        ("doc2.txt", "randomised"): ("perhaps", None, None),
        ("doc2.txt", "sponsor"): (None, None, "looks odd"),
        ("doc1.txt", "enrollment"): ("no", "101", None),  # same as extracted
    })
    with pytest.raises(ValidationError) as err:
        import_review_workbook(session, path)
    session.rollback()
    problems = err.value.extra["errors"]
    rows = {p["row"]: p for p in problems}
    assert len(problems) == 5
    enrol = rows[_row_of(path, "doc0.txt", "enrollment")]
    assert enrol["column"] == "corrected value" and "not a valid value" in enrol["message"]
    assert enrol["field"] == f"Review!L{enrol['row']}"
    assert "choose one of" in rows[_row_of(path, "doc1.txt", "phase")]["message"]
    assert "use yes or no" in rows[_row_of(path, "doc2.txt", "randomised")]["message"]
    assert "without a verdict" in rows[_row_of(path, "doc2.txt", "sponsor")]["message"]
    assert "mark it correct" in rows[_row_of(path, "doc1.txt", "enrollment")]["message"]
    assert "nothing was imported" in err.value.detail
    assert f"Row {min(rows)}" in err.value.detail
    assert _count(session) == 0


def test_edited_header_missing_sheet_and_non_workbooks(session: Session, tmp_path: Path) -> None:
    s = make_sample(session)
    path = export_review_workbook(session, s.job.id, tmp_path / "review.xlsx").path

    wb = load_workbook(path)
    wb[REVIEW_SHEET].cell(1, COL["corrected value"]).value = "fixed value"
    edited = tmp_path / "edited.xlsx"
    wb.save(edited)
    with pytest.raises(ValidationError) as err:
        import_review_workbook(session, edited)
    assert err.value.field == "Review!L1"
    assert "column L" in err.value.detail and "'corrected value'" in err.value.detail
    assert "'fixed value'" in err.value.detail

    wb = load_workbook(path)
    wb[REVIEW_SHEET].title = "Sheet1"
    renamed = tmp_path / "renamed.xlsx"
    wb.save(renamed)
    with pytest.raises(ValidationError) as err:
        import_review_workbook(session, renamed)
    assert err.value.field == "Review" and "no sheet 'Review'" in err.value.detail
    assert "'Sheet1'" in err.value.detail

    bogus = tmp_path / "notes.xlsx"
    bogus.write_text("not a workbook")
    with pytest.raises(ValidationError, match="not a readable .xlsx"):
        import_review_workbook(session, bogus)
    with pytest.raises(ValidationError, match="no workbook at"):
        import_review_workbook(session, tmp_path / "missing.xlsx")


def test_tampered_ids_and_duplicated_rows_are_row_problems(session: Session, tmp_path: Path) -> None:
    s = make_sample(session)
    path = export_review_workbook(session, s.job.id, tmp_path / "review.xlsx").path
    wb = load_workbook(path)
    ws = wb[REVIEW_SHEET]
    ws.cell(2, 1).value = "garbage"
    ws.cell(2, COL["correct?"]).value = "yes"
    ws.cell(3, COL["correct?"]).value = "yes"
    ws.cell(4, 1).value = ws.cell(3, 1).value  # a copied row
    ws.cell(4, COL["correct?"]).value = "yes"
    ws.cell(5, 1).value = "0b8c5f0e-3f1e-4b1a-9c57-2f4a4c5d9e10"
    ws.cell(5, COL["correct?"]).value = "yes"
    wb.save(path)
    with pytest.raises(ValidationError) as err:
        import_review_workbook(session, path)
    messages = {p["row"]: p["message"] for p in err.value.extra["errors"]}
    assert "missing or was changed" in messages[2]
    assert "already reviewed on row 3" in messages[4]
    assert "no longer exists" in messages[5]
    assert 3 not in messages


def test_multi_select_and_empty_jobs(session: Session, tmp_path: Path) -> None:
    s = make_sample(session)
    from extraction import codebook
    s.variables["arms"] = codebook.add_variable(session, s.project, {
        "name": "arms", "type": "CATEGORY", "categories": ["drug", "placebo"],
        "multi_select": True})
    add_job(session, s, {(0, "arms"): ["drug"]})
    session.commit()
    path = export_review_workbook(session, s.jobs[1].id, tmp_path / "arms.xlsx").path
    ws = load_workbook(path)[REVIEW_SHEET]
    dv = next(d for d in ws.data_validations.dataValidation if d.formula1.startswith("'Lists'!"))
    assert dv.showErrorMessage is False  # several categories must be typable
    _fill(path, {("doc0.txt", "arms"): ("no", "placebo; Drug", None)})
    import_review_workbook(session, path)
    [view] = feedback.list_feedback(session, "trials", variable="arms")
    assert view.corrected_value == ["drug", "placebo"]

    empty = add_job(session, s, {})
    with pytest.raises(StateError, match="no extractions"):
        export_review_workbook(session, empty.id, tmp_path / "empty.xlsx")


def test_import_over_a_cli_verdict_keeps_one_current_verdict(session: Session,
                                                            tmp_path: Path) -> None:
    s = make_sample(session)
    views = {(v.filename, v.variable): v for v in _exported_cells(session, s)}
    cell = views[("doc0.txt", "enrollment")]
    feedback.record_feedback(session, cell.extraction_id, is_correct=True, source="cli")
    session.commit()

    # The workbook shows the CLI's verdict; importing it unchanged adds nothing.
    path = export_review_workbook(session, s.job.id, tmp_path / "review.xlsx").path
    same = import_review_workbook(session, path)
    session.commit()
    assert (same.created, same.updated, same.unchanged) == (0, 0, 1) and _count(session) == 1

    # A different verdict replaces it: reported as updated, the older one kept as history.
    _fill(path, {("doc0.txt", "enrollment"): ("no", "1240", "typo")})
    changed = import_review_workbook(session, path)
    session.commit()
    assert (changed.created, changed.updated, changed.unchanged) == (0, 1, 0)
    current = feedback.list_feedback(session, "trials", effective_only=True)
    assert [(v.source, v.is_correct, v.corrected_value) for v in current] == [
        ("workbook", False, 1240)]
    history = feedback.list_feedback(session, "trials")
    assert sorted(v.source for v in history) == ["cli", "workbook"]

    # The CLI saying it again makes the CLI's verdict current once more: still one current.
    again = feedback.record_feedback(session, cell.extraction_id, is_correct=True, source="cli")
    session.commit()
    assert again.action == "updated"
    current = feedback.list_feedback(session, "trials", effective_only=True)
    assert [(v.source, v.is_correct) for v in current] == [("cli", True)]


def _exported_cells(session: Session, sample: Any) -> list[Any]:
    from sqlalchemy import select as sa_select

    from extraction.models import Document, Extraction, Variable

    rows = session.execute(
        sa_select(Extraction.id, Document.filename, Variable.name)
        .join(Document, Document.id == Extraction.document_id)
        .join(Variable, Variable.id == Extraction.variable_id)
        .where(Extraction.job_id == sample.job.id)).all()
    from types import SimpleNamespace

    return [SimpleNamespace(extraction_id=i, filename=f, variable=n) for i, f, n in rows]
