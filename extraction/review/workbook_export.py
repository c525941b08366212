"""Writing a job's review workbook: one row per extraction, dropdowns, verdicts prefilled.

Every column a reviewer should not edit is locked by sheet protection, and the extraction id
column is hidden. The protection has no password: it is a guard against slips, not a security
boundary. Text is always written as text, so a quote such as ``=HYPERLINK(…)`` from a document
is shown, never run. The sheet layout lives in :mod:`extraction.review.workbook`.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill, Protection
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.worksheet.cell_range import MultiCellRange
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from extraction.errors import StateError
from extraction.models import Document, Extraction, ProcessingJob, Variable, VariableType
from extraction.review.corrections import OTHER, format_value
from extraction.review.feedback import effective_feedback, get_job
from extraction.review.workbook import (
    COLUMN_NUMBER as _COL,
)
from extraction.review.workbook import (
    COLUMNS,
    EDITABLE,
    GUIDE_SHEET,
    LISTS_SHEET,
    REVIEW_SHEET,
)

__all__ = ["ExportSummary", "export_review_workbook"]

_WIDTHS = {"document": 28, "variable": 18, "type": 10, "value": 28, "status": 10,
           "confidence": 11, "support": 13, "evidence": 60, "page": 6, "correct": 10, "corrected": 28,
           "comment": 40}
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
        for key in EDITABLE:
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
