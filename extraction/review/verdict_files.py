"""Verdict files exported by the review page (JSON or CSV), imported row by row.

The page writes either format; both carry, per verdict, the extraction id, its job, the
document and variable (for people reading the file), the verdict, a corrected value and a
comment. JSON::

    {"format": "extractflow-review-verdicts", "version": 1, "job_id": "…",
     "verdicts": [{"extraction_id": "…", "is_correct": false, "corrected_value": "Acme",
                   "comment": "…", "document": "a.pdf", "variable": "sponsor"}, …]}

CSV has the columns of :data:`CSV_COLUMNS`; ``correct`` is yes/no. Text cells that a
spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``) are written with a leading
``'`` by the page, and that quote is dropped again here.

Unlike the workbook import (all or nothing), a verdict file is imported **row by row**: the page
is where people hand-edit least, so one stale row (an extraction deleted since, a verdict file
of another job, a corrected value that does not fit) should not hold back the rest. Every
refused row is reported with its row number and reason. The checks and the storing are those
of :mod:`extraction.review.feedback`, so a verdict from the page is held to the rules of one
from the CLI or the workbook; verdicts are stored with source :data:`SOURCE`.
"""

from __future__ import annotations

import csv
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from extraction.errors import ExtractflowError, ValidationError
from extraction.models import Extraction
from extraction.review.feedback import check_feedback, effective_feedback, store_new_verdicts

__all__ = ["CSV_COLUMNS", "FORMAT", "SOURCE", "RowProblem", "VerdictImport", "VerdictRow",
           "import_verdict_file", "read_verdict_file"]

FORMAT = "extractflow-review-verdicts"
SOURCE = "review-page"
CSV_COLUMNS = ("extraction_id", "job_id", "document", "variable", "extracted value",
               "correct", "corrected value", "comment")
_YES = {"yes", "y", "true", "correct", "1"}
_NO = {"no", "n", "false", "wrong", "incorrect", "0"}
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_ID_BATCH = 1000


@dataclass(frozen=True)
class VerdictRow:
    """One verdict as read from the file (not yet checked against the database)."""

    row: int
    extraction_id: uuid.UUID
    job_id: str | None
    is_correct: bool
    corrected_value: Any
    comment: str
    label: str


@dataclass(frozen=True)
class RowProblem:
    """Why one row was not imported; ``row`` is the CSV line or the 1-based JSON entry."""

    row: int
    field: str
    message: str
    extraction_id: str | None = None
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "message": self.message,
                "extraction_id": self.extraction_id, "label": self.label}


@dataclass
class VerdictImport:
    """What an import did; ``problems`` lists every refused row."""

    path: Path
    job_id: str | None
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    feedback_ids: list[uuid.UUID] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.created + self.updated + self.unchanged


# --------------------------------------------------------------------------- reading


def _bad_file(path: Path, why: str) -> ValidationError:
    return ValidationError(
        f"{path.name} is not a verdict file of the review page: {why}. Export one with the "
        "page's 'Export JSON' or 'Export CSV' button (or import a workbook: .xlsx)",
        field="path", instance=str(path))


def _verdict(raw: Any) -> bool | None:
    """True/False for a recognised verdict, None when there is none; ValueError otherwise."""
    if isinstance(raw, bool):
        return raw
    text = "" if raw is None else str(raw).strip().casefold()
    if not text:
        return None
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise ValueError(raw)


def _unquote(text: str) -> str:
    """Drop the ``'`` the page puts before a cell a spreadsheet would run as a formula."""
    return text[1:] if text.startswith("'") and text[1:2] in _FORMULA else text


def _row(
    number: int, entry: dict[str, Any], problems: list[RowProblem], seen: dict[uuid.UUID, int],
) -> VerdictRow | None:
    label = " / ".join(str(entry[k]) for k in ("document", "variable") if entry.get(k))
    raw_id = str(entry.get("extraction_id") or "").strip()
    try:
        extraction_id = uuid.UUID(raw_id)
    except ValueError:
        what = f"'{raw_id}' is not an extraction id" if raw_id else "no extraction id"
        problems.append(RowProblem(number, "extraction_id", what + " (ids are UUIDs)",
                                   raw_id or None, label))
        return None
    if extraction_id in seen:
        problems.append(RowProblem(number, "extraction_id",
                                   f"extraction {extraction_id} already has a verdict on row "
                                   f"{seen[extraction_id]} of this file", raw_id, label))
        return None
    corrected = entry.get("corrected_value")
    if isinstance(corrected, str):
        corrected = corrected.strip() or None
    try:
        is_correct = _verdict(entry.get("is_correct"))
    except ValueError:
        problems.append(RowProblem(number, "is_correct",
                                   f"'{entry.get('is_correct')}' is not a verdict: use yes "
                                   "(correct) or no (wrong)", raw_id, label))
        return None
    if is_correct is None:
        if corrected is None:
            problems.append(RowProblem(number, "is_correct", "no verdict: set correct to yes "
                                       "or no", raw_id, label))
            return None
        is_correct = False  # a correction on its own says "wrong", as in the workbook
    seen[extraction_id] = number
    job = entry.get("job_id")
    return VerdictRow(row=number, extraction_id=extraction_id,
                      job_id=str(job).strip() if job else None, is_correct=is_correct,
                      corrected_value=corrected, comment=str(entry.get("comment") or "").strip(),
                      label=label)


def _read_json(path: Path, text: str) -> tuple[str | None, list[dict[str, Any]]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad_file(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _bad_file(path, f"it has no \"format\": \"{FORMAT}\"")
    entries = doc.get("verdicts")
    if not isinstance(entries, list):
        raise _bad_file(path, "it has no list of \"verdicts\"")
    job = doc.get("job_id")
    return (str(job) if job else None), [
        e if isinstance(e, dict) else {"extraction_id": None} for e in entries]


def _read_csv(path: Path, text: str) -> tuple[str | None, list[dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines(keepends=True))
    headers = [h.strip().casefold() for h in (reader.fieldnames or [])]
    missing = [c for c in ("extraction_id", "correct") if c not in headers]
    if missing:
        raise _bad_file(path, f"the header row lacks {', '.join(missing)} (columns: "
                              f"{', '.join(CSV_COLUMNS)})")
    entries = []
    jobs: set[str] = set()
    for raw in reader:
        cell = {(k or "").strip().casefold(): _unquote(v.strip()) if isinstance(v, str) else ""
                for k, v in raw.items()}
        if cell.get("job_id"):
            jobs.add(cell["job_id"])
        entries.append({
            "extraction_id": cell.get("extraction_id"), "job_id": cell.get("job_id"),
            "document": cell.get("document"), "variable": cell.get("variable"),
            "is_correct": cell.get("correct"), "corrected_value": cell.get("corrected value"),
            "comment": cell.get("comment"),
        })
    return (jobs.pop() if len(jobs) == 1 else None), entries


def read_verdict_file(path: str | Path) -> tuple[str | None, list[VerdictRow], list[RowProblem]]:
    """Parse a verdict file: the job it names, its readable rows, and the unreadable ones.

    Raises:
        ValidationError: not a file, not UTF-8, not JSON/CSV of the page's shape.
    """
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"no verdict file at {path}", field="path", instance=str(path))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _bad_file(path, "it is not UTF-8 text") from exc
    is_json = path.suffix.lower() == ".json" or (
        path.suffix.lower() != ".csv" and text.lstrip().startswith("{"))
    job, entries = _read_json(path, text) if is_json else _read_csv(path, text)
    problems: list[RowProblem] = []
    seen: dict[uuid.UUID, int] = {}
    first = 1 if is_json else 2  # a CSV's first data row is line 2
    rows = [row for row in (_row(i, entry, problems, seen)
                            for i, entry in enumerate(entries, start=first)) if row]
    return job, rows, problems


# --------------------------------------------------------------------------- importing


def import_verdict_file(
    session: Session, path: str | Path, *, job: str | None = None, source: str = SOURCE,
) -> VerdictImport:
    """Import the verdicts of a page export; refused rows are reported, the others stored.

    Args:
        session: an open session; the caller commits.
        path: a ``.json`` or ``.csv`` file written by the review page.
        job: if given, the job the verdicts must belong to (rows of another job are refused).
        source: the feedback source recorded on each verdict.

    Raises:
        ValidationError: the file as a whole is unreadable (see :func:`read_verdict_file`).
    """
    path = Path(path)
    file_job, rows, problems = read_verdict_file(path)
    report = VerdictImport(path=path, job_id=file_job, rows=len(rows) + len(problems))
    found: dict[uuid.UUID, Extraction] = {}
    ids = [r.extraction_id for r in rows]
    for start in range(0, len(ids), _ID_BATCH):  # bounded IN lists (SQLite caps parameters)
        found.update((e.id, e) for e in session.scalars(
            select(Extraction).where(Extraction.id.in_(ids[start:start + _ID_BATCH]))
            .options(selectinload(Extraction.variable), selectinload(Extraction.job))))
    current: dict[uuid.UUID, Any] = {}
    for project_id in {e.job.project_id for e in found.values()}:
        current.update(effective_feedback(session, project_id))

    to_store = []
    for row in rows:
        def refuse(field_name: str, message: str, row: VerdictRow = row) -> None:
            problems.append(RowProblem(row.row, field_name, message, str(row.extraction_id),
                                       row.label))

        extraction = found.get(row.extraction_id)
        if extraction is None:
            refuse("extraction_id", f"no extraction {row.extraction_id} in this database "
                   "(was its job deleted, or is the file from another database?)")
            continue
        owner = str(extraction.job_id)
        wanted = job or row.job_id or file_job
        if wanted and not owner.startswith(wanted.strip().lower()):
            refuse("job_id", f"extraction {row.extraction_id} belongs to job {owner}, not to "
                   f"job {wanted} that this file is for")
            continue
        try:
            value = check_feedback(extraction, is_correct=row.is_correct,
                                   corrected_value=row.corrected_value)
        except ExtractflowError as exc:
            refuse(exc.field or "is_correct", exc.detail)
            continue
        to_store.append((extraction, row.is_correct, value, row.comment))
    store_new_verdicts(session, current, to_store, source=source, report=report)
    problems.sort(key=lambda p: p.row)
    report.problems = problems
    return report
