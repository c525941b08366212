"""Reading a filled-in review workbook back and importing its verdicts, all or nothing.

Every row is parsed and checked against its variable first, every problem is reported with its
sheet row and cell, and only a workbook without problems is written — in the caller's
transaction — so a reviewer fixes the list in one go and never gets half an import. Rows with no
verdict, correction or comment are skipped. Verdicts are stored with source ``workbook`` (one per
extraction, see :mod:`extraction.review.feedback`), and a row that repeats the verdict already in
effect is left alone, so importing the same workbook twice adds nothing.
"""

from __future__ import annotations

import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from extraction.errors import ExtractflowError, ValidationError
from extraction.models import Extraction
from extraction.review.feedback import check_feedback, effective_feedback, store_new_verdicts
from extraction.review.workbook import COLUMN_NUMBER as _COL
from extraction.review.workbook import COLUMNS, REVIEW_SHEET

__all__ = ["SOURCE", "ImportReport", "ReviewRow", "import_review_workbook", "read_review_workbook"]

#: The feedback source recorded on verdicts imported from a workbook.
SOURCE = "workbook"
_YES = {"yes", "y", "true", "correct", "ok", "1", "✓", "x"}
_NO = {"no", "n", "false", "wrong", "incorrect", "0", "✗"}
_ID_BATCH = 1000


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
        path: the workbook exported by
            :func:`~extraction.review.workbook_export.export_review_workbook`.
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

    store_new_verdicts(session, current,
                       [(extraction, row.is_correct, value, row.comment)
                        for row, extraction, value in checked],
                       source=source, report=report)
    return report

