"""A review workbook (xlsx) that round-trips: export a job's results, fill in verdicts, import.

The ``Review`` sheet has one row per extraction: document, variable, type, extracted value,
status, confidence, support (does the quote state the value?), evidence quote and page, then
three columns a reviewer fills in — *correct?* (a yes/no dropdown), *corrected value* (a dropdown of the categories for CATEGORY variables,
true/false for BOOLEAN; free text otherwise) and *comment*. Column A holds the extraction id; it
is hidden and, like every column a reviewer should not edit, locked by sheet protection (no
password: protection is a guard against slips, not a security boundary).

Import is all or nothing: every row is parsed and checked against the variable first, every
problem is reported with its sheet row and cell, and only a workbook without problems is
written — in the caller's transaction. Rows with no verdict, correction or comment are skipped.
Verdicts are stored with source ``workbook`` (one per extraction, see
:mod:`extraction.review.feedback`), and a row that repeats the verdict already in effect is left
alone, so importing the same workbook twice adds nothing.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill, Protection
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet.cell_range import MultiCellRange
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from extraction.errors import ExtractflowError, StateError, ValidationError
from extraction.models import Document, Extraction, ProcessingJob, Variable, VariableType
from extraction.review.feedback import (
    OTHER,
    check_feedback,
    effective_feedback,
    format_value,
    get_job,
    same_value,
    store_checked,
)

__all__ = [
    "COLUMNS",
    "REVIEW_SHEET",
    "ExportSummary",
    "ImportReport",
    "ReviewRow",
    "export_review_workbook",
    "import_review_workbook",
    "read_review_workbook",
]

REVIEW_SHEET = "Review"
LISTS_SHEET = "Lists"
GUIDE_SHEET = "How to review"
SOURCE = "workbook"

#: (key, header) of every column of the Review sheet, in order. Headers are checked on import.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("extraction_id", "extraction id"),
    ("document", "document"),
    ("variable", "variable"),
    ("type", "type"),
    ("value", "extracted value"),
    ("status", "status"),
    ("confidence", "confidence"),
    ("support", "support"),
    ("evidence", "evidence quote"),
    ("page", "page"),
    ("correct", "correct?"),
    ("corrected", "corrected value"),
    ("comment", "comment"),
)
_COL = {key: index + 1 for index, (key, _) in enumerate(COLUMNS)}
_EDITABLE = ("correct", "corrected", "comment")
_WIDTHS = {"document": 28, "variable": 18, "type": 10, "value": 28, "status": 10,
           "confidence": 11,
           "support": 13, "evidence": 60, "page": 6, "correct": 10, "corrected": 28,
           "comment": 40}
_YES = {"yes", "y", "true", "correct", "ok", "1", "✓", "x"}
_NO = {"no", "n", "false", "wrong", "incorrect", "0", "✗"}
_ID_BATCH = 1000
_MAX_CELL = 32_000  # Excel holds at most 32,767 characters per cell
_EDIT_FILL = PatternFill("solid", fgColor="FFF2CC")
_GUIDE = (
    "How to review",
    "",
    "Fill in the three yellow columns of the 'Review' sheet; leave a row blank to skip it.",
    "correct?  — yes if the extracted value is right, no if it is wrong.",
    ("corrected value — for a wrong value, the right one. Leave it blank when the document does "
     "not state the variable at all. CATEGORY: pick from the dropdown (several categories: "
     "separate them with ';'). NUMBER: a plain number. DATE: YYYY, YYYY-MM or YYYY-MM-DD. "
     "BOOLEAN: true or false."),
    "comment — why it is wrong, or what the prompt should know; refinement reads it.",
    "A corrected value on its own counts as 'no'.",
    "",
    ("Do not rename the sheets or edit the header row: the import checks them. The hidden first "
     "column identifies each extraction."),
    "Import with:  extractflow review import <this file>",
)


def _clean(text: str) -> str:
    text = ILLEGAL_CHARACTERS_RE.sub("", text)
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def _put_text(ws: Worksheet, row: int, col: int, text: str | None) -> None:
    """Write text that a spreadsheet must show, never run (``=``, ``+``, ``-``, ``@``)."""
    cell = ws.cell(row=row, column=col)
    if text is None or text == "":
        return
    cell.value = _clean(text)
    cell.data_type = "s"  # openpyxl would otherwise store "=…" as a formula


# --------------------------------------------------------------------------- export


def _row_ranges(letter: str, rows: list[int]) -> str:
    """``K2:K4 K9`` for rows 2, 3, 4 and 9 of column K (rows ascending)."""
    spans: list[list[int]] = []
    for row in rows:
        if spans and row == spans[-1][1] + 1:
            spans[-1][1] = row
        else:
            spans.append([row, row])
    return " ".join(f"{letter}{a}" if a == b else f"{letter}{a}:{letter}{b}" for a, b in spans)


@dataclass(frozen=True)
class ExportSummary:
    """Where the workbook went and what is in it."""

    path: Path
    job_id: uuid.UUID
    rows: int
    prefilled: int


def _job_cells(session: Session, job: ProcessingJob) -> list[Extraction]:
    query = (
        select(Extraction)
        .join(Document, Document.id == Extraction.document_id)
        .join(Variable, Variable.id == Extraction.variable_id)
        .where(Extraction.job_id == job.id)
        .options(selectinload(Extraction.document), selectinload(Extraction.variable))
        .order_by(Document.filename, Document.id, Variable.position, Variable.name)
    )
    return list(session.scalars(query))


def _category_lists(wb: Workbook, variables: list[Variable]) -> dict[uuid.UUID, str]:
    """Write each dropdown's choices in a hidden sheet; returns variable id → range formula."""
    ws = wb.create_sheet(LISTS_SHEET)
    ws.sheet_state = "hidden"
    ranges: dict[uuid.UUID, str] = {}
    col = 0
    for variable in variables:
        if variable.type is VariableType.CATEGORY:
            choices = list(variable.categories or []) + ([OTHER] if variable.allow_other else [])
        elif variable.type is VariableType.BOOLEAN:
            choices = ["true", "false"]
        else:
            continue
        col += 1
        letter = get_column_letter(col)
        _put_text(ws, 1, col, variable.name)
        for i, choice in enumerate(choices, start=2):
            _put_text(ws, i, col, choice)
        ranges[variable.id] = (
            f"{quote_sheetname(LISTS_SHEET)}!${letter}$2:${letter}${len(choices) + 1}")
    return ranges


def export_review_workbook(
    session: Session, job: str | uuid.UUID | ProcessingJob, path: str | Path
) -> ExportSummary:
    """Write the review workbook of ``job`` to ``path`` (replacing it atomically).

    Verdicts already recorded (by any source) are filled in, so an exported workbook always
    shows the current state and re-importing it changes nothing.

    Raises:
        NotFoundError: no such job.
        StateError: the job has no extractions yet.
    """
    job_row = get_job(session, job)
    cells = _job_cells(session, job_row)
    if not cells:
        raise StateError(f"job {job_row.id} has no extractions to review yet",
                         instance=str(job_row.id))
    verdicts = effective_feedback(session, job_row.project_id, job=job_row)
    variables = list({c.variable_id: c.variable for c in cells}.values())
    variables.sort(key=lambda v: (v.position, v.name))

    wb = Workbook()
    ws = wb.active
    ws.title = REVIEW_SHEET
    for key, header in COLUMNS:
        cell = ws.cell(row=1, column=_COL[key], value=header)
        cell.font = Font(bold=True)
    lists = _category_lists(wb, variables)

    correct_dv = DataValidation(type="list", formula1='"yes,no"', allow_blank=True,
                                showErrorMessage=True, errorTitle="correct?",
                                error="Answer yes or no (or leave blank to skip the row).")
    ws.add_data_validation(correct_dv)
    choice_dvs: dict[uuid.UUID, DataValidation] = {}
    for variable in variables:
        if variable.id not in lists:
            continue
        strict = not variable.multi_select
        dv = DataValidation(
            type="list", formula1=lists[variable.id], allow_blank=True,
            showErrorMessage=strict, errorTitle=variable.name,
            error=f"Choose one of the categories of '{variable.name}'.",
            showInputMessage=variable.multi_select, promptTitle=variable.name,
            prompt="Several categories: separate them with ';'." if variable.multi_select
            else None,
        )
        ws.add_data_validation(dv)
        choice_dvs[variable.id] = dv

    prefilled = 0
    choice_rows: dict[uuid.UUID, list[int]] = {}
    for r, cell in enumerate(cells, start=2):
        variable = cell.variable
        _put_text(ws, r, _COL["extraction_id"], str(cell.id))
        _put_text(ws, r, _COL["document"], cell.document.filename)
        _put_text(ws, r, _COL["variable"], variable.name)
        _put_text(ws, r, _COL["type"], variable.type.value)
        _put_text(ws, r, _COL["value"], format_value(cell.value))
        _put_text(ws, r, _COL["status"], cell.status.value)
        if cell.confidence is not None:
            ws.cell(row=r, column=_COL["confidence"], value=round(cell.confidence, 3))
        _put_text(ws, r, _COL["support"], cell.support)
        _put_text(ws, r, _COL["evidence"], cell.evidence_quote)
        if cell.evidence_page is not None:
            ws.cell(row=r, column=_COL["page"], value=cell.evidence_page)
        verdict = verdicts.get(cell.id)
        if verdict is not None:
            prefilled += 1
            _put_text(ws, r, _COL["correct"], "yes" if verdict.is_correct else "no")
            if not verdict.is_correct:
                _put_text(ws, r, _COL["corrected"], format_value(verdict.corrected_value))
            _put_text(ws, r, _COL["comment"], verdict.comment)
        for key in _EDITABLE:
            target = ws.cell(row=r, column=_COL[key])
            target.protection = Protection(locked=False)
            target.fill = _EDIT_FILL
            target.number_format = "@"  # keep "2020-05" and "007" as typed
        if variable.id in choice_dvs:
            choice_rows.setdefault(variable.id, []).append(r)

    # Ranges are set in one go: adding cells one by one is quadratic in openpyxl.
    correct_letter = get_column_letter(_COL["correct"])
    correct_dv.sqref = MultiCellRange(f"{correct_letter}2:{correct_letter}{len(cells) + 1}")
    for variable_id, rows in choice_rows.items():
        choice_dvs[variable_id].sqref = MultiCellRange(
            _row_ranges(get_column_letter(_COL["corrected"]), rows))
    for key, width in _WIDTHS.items():
        ws.column_dimensions[get_column_letter(_COL[key])].width = width
    ws.column_dimensions["A"].hidden = True
    for r in range(2, len(cells) + 2):
        ws.cell(row=r, column=_COL["evidence"]).alignment = Alignment(wrap_text=True,
                                                                     vertical="top")
    ws.freeze_panes = "B2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{len(cells) + 1}"
    ws.protection.sheet = True
    ws.protection.autoFilter = False  # reviewers may filter and resize while protected
    ws.protection.sort = False
    ws.protection.formatColumns = False
    ws.protection.formatRows = False

    guide = wb.create_sheet(GUIDE_SHEET)
    for i, line in enumerate(_GUIDE, start=1):
        _put_text(guide, i, 1, line)
    guide["A1"].font = Font(bold=True)
    guide.column_dimensions["A"].width = 120
    _put_text(guide, len(_GUIDE) + 2, 1, f"job: {job_row.id}")
    wb.move_sheet(guide, offset=-1)  # Review, then the guide, then the hidden lists

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".xlsx", dir=target.parent)
    os.close(fd)
    try:
        wb.save(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return ExportSummary(path=target, job_id=job_row.id, rows=len(cells), prefilled=prefilled)


# --------------------------------------------------------------------------- import


@dataclass(frozen=True)
class ReviewRow:
    """One filled-in row of the Review sheet, as read (not yet checked against the database)."""

    sheet_row: int
    extraction_id: uuid.UUID
    is_correct: bool
    corrected_value: Any
    comment: str


@dataclass
class ImportReport:
    """What an import did: rows read and verdicts created, updated or already in effect."""

    path: Path
    rows: int = 0
    blank: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    feedback_ids: list[uuid.UUID] = field(default_factory=list)


def _problem(problems: list[dict[str, Any]], row: int, key: str, message: str) -> None:
    letter = get_column_letter(_COL[key])
    problems.append({"row": row, "field": f"{REVIEW_SHEET}!{letter}{row}",
                     "column": dict(COLUMNS)[key], "message": message})


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() \
            else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _open(path: Path) -> Any:
    """The workbook, read-only (fast, streaming); its Review sheet is checked by :func:`_sheet`."""
    if not path.is_file():
        raise ValidationError(f"no workbook at {path}", field="path", instance=str(path))
    try:
        wb = load_workbook(path, data_only=True, read_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ValidationError(
            f"{path.name} is not a readable .xlsx workbook ({exc.__class__.__name__}: {exc})",
            field="path", instance=str(path),
        ) from exc
    return wb


def _sheet(wb: Any, path: Path) -> Any:
    """The Review sheet, after checking that it exists and its header row is intact."""
    if REVIEW_SHEET not in wb.sheetnames:
        raise ValidationError(
            f"{path.name} has no sheet '{REVIEW_SHEET}' (it has: "
            f"{', '.join(repr(n) for n in wb.sheetnames)}); export a fresh workbook with "
            "`extractflow review export JOB FILE` and fill that one in",
            field=REVIEW_SHEET, instance=str(path),
        )
    ws = wb[REVIEW_SHEET]
    first = next(ws.iter_rows(min_row=1, max_row=1, max_col=len(COLUMNS), values_only=True),
                 ())
    first = tuple(first) + (None,) * (len(COLUMNS) - len(first))
    for key, header in COLUMNS:
        found = _text(first[_COL[key] - 1])
        if found.casefold() != header.casefold():
            letter = get_column_letter(_COL[key])
            seen = f"'{found}'" if found else "an empty cell"
            raise ValidationError(
                f"sheet '{REVIEW_SHEET}', column {letter}: the header should be '{header}' "
                f"but is {seen}; the header row must not be edited",
                field=f"{REVIEW_SHEET}!{letter}1", instance=str(path),
            )
    return ws


def read_review_workbook(path: str | Path) -> tuple[list[ReviewRow], int, list[dict[str, Any]]]:
    """Parse the Review sheet: the filled-in rows, the number of blank rows, and problems.

    Only the sheet's shape (sheet name, header row) raises; problems in single rows are
    returned so that every one of them can be reported together.

    Raises:
        ValidationError: the file is not an xlsx workbook, has no ``Review`` sheet, or its
            header row was edited (``field`` names the sheet or the header cell).
    """
    path = Path(path)
    wb = _open(path)
    try:
        return _read_rows(_sheet(wb, path))
    finally:
        wb.close()  # a read-only workbook holds the file open until closed


def _read_rows(ws: Any) -> tuple[list[ReviewRow], int, list[dict[str, Any]]]:
    rows: list[ReviewRow] = []
    problems: list[dict[str, Any]] = []
    blank = 0
    seen: dict[uuid.UUID, int] = {}
    for r, values in enumerate(ws.iter_rows(min_row=2, max_col=len(COLUMNS),
                                            values_only=True), start=2):
        values = tuple(values) + (None,) * (len(COLUMNS) - len(values))
        cell = dict(zip((k for k, _ in COLUMNS), values))
        verdict = _text(cell["correct"]).casefold()
        corrected = cell["corrected"]
        if isinstance(corrected, str):
            corrected = corrected.strip()
        comment = _text(cell["comment"])
        if not verdict and corrected in (None, "") and not comment:
            blank += 1
            continue
        try:
            extraction_id = uuid.UUID(_text(cell["extraction_id"]))
        except ValueError:
            _problem(problems, r, "extraction_id",
                     "the hidden extraction id is missing or was changed; copy rows only "
                     "from an exported workbook")
            continue
        if extraction_id in seen:
            _problem(problems, r, "extraction_id",
                     f"the same extraction is already reviewed on row {seen[extraction_id]}")
            continue
        seen[extraction_id] = r
        if verdict in _YES:
            is_correct = True
        elif verdict in _NO or (not verdict and corrected not in (None, "")):
            is_correct = False
        elif not verdict:
            _problem(problems, r, "correct",
                     "a comment without a verdict: set correct? to yes or no")
            continue
        else:
            _problem(problems, r, "correct",
                     f"'{_text(cell['correct'])}' is not an answer: use yes or no")
            continue
        rows.append(ReviewRow(sheet_row=r, extraction_id=extraction_id, is_correct=is_correct,
                              corrected_value=None if corrected == "" else corrected,
                              comment=comment))
    return rows, blank, problems


def _raise_problems(path: Path, problems: list[dict[str, Any]]) -> None:
    problems.sort(key=lambda p: p["row"])
    first = problems[0]
    more = len(problems) - 1
    detail = (
        f"{len(problems)} row(s) of sheet '{REVIEW_SHEET}' in {path.name} cannot be imported, "
        f"so nothing was imported. Row {first['row']}, {first['column']}: {first['message']}"
        + (f" (and {more} more: see errors)" if more else "")
    )
    raise ValidationError(detail, field=first["field"], instance=str(path),
                          extra={"errors": problems})


def import_review_workbook(
    session: Session, path: str | Path, *, source: str = SOURCE
) -> ImportReport:
    """Import the verdicts of a filled-in review workbook, all or nothing.

    Args:
        session: an open session; everything is written in it and the caller commits.
        path: the workbook exported by :func:`export_review_workbook`.
        source: the feedback source recorded on each verdict.

    Raises:
        ValidationError: a bad file or sheet shape, or (after checking every row) the list of
            invalid rows in ``extra["errors"]``, each with its row, cell and reason.
    """
    path = Path(path)
    rows, blank, problems = read_review_workbook(path)
    report = ImportReport(path=path, rows=len(rows) + blank, blank=blank)
    found: dict[uuid.UUID, Extraction] = {}
    ids = [r.extraction_id for r in rows]
    for start in range(0, len(ids), _ID_BATCH):  # bounded IN lists (SQLite caps parameters)
        found.update((e.id, e) for e in session.scalars(
            select(Extraction).where(Extraction.id.in_(ids[start:start + _ID_BATCH]))
            .options(selectinload(Extraction.variable), selectinload(Extraction.job))))
    project_ids = {e.job.project_id for e in found.values()}
    current: dict[uuid.UUID, Any] = {}
    for pid in project_ids:
        current.update(effective_feedback(session, pid))
    checked: list[tuple[ReviewRow, Extraction, Any]] = []
    for row in rows:
        extraction = found.get(row.extraction_id)
        if extraction is None:
            _problem(problems, row.sheet_row, "extraction_id",
                     f"extraction {row.extraction_id} no longer exists (was its job deleted?)")
            continue
        try:
            value = check_feedback(extraction, is_correct=row.is_correct,
                                   corrected_value=row.corrected_value)
        except ExtractflowError as exc:
            key = "corrected" if exc.field == "corrected_value" else "correct"
            _problem(problems, row.sheet_row, key, exc.detail)
            continue
        checked.append((row, extraction, value))
    if problems:
        _raise_problems(path, problems)

    to_store = []
    for row, extraction, value in checked:
        verdict = current.get(extraction.id)
        if verdict is not None and verdict.is_correct == row.is_correct \
                and verdict.comment == row.comment \
                and (row.is_correct or same_value(extraction.variable,
                                                  verdict.corrected_value, value)):
            report.unchanged += 1
            continue
        to_store.append((extraction, row.is_correct, value, row.comment))
    for outcome in store_checked(session, to_store, source=source):
        setattr(report, outcome.action, getattr(report, outcome.action) + 1)
        report.feedback_ids.append(outcome.feedback.id)
    return report

