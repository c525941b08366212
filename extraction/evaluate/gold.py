"""Gold data: the right value of document × variable cells, from a file or from reviews.

A gold file is CSV or XLSX (first sheet), with a header row, in one of two shapes:

* **wide** — one row per document: a ``document_id`` or ``filename`` column, then one column
  per variable, named as in the codebook (an export's ``csv-wide`` file has this shape);
* **long** — one row per cell: ``document_id``/``filename``/``document``, ``variable``,
  ``value``.

Every cell of a gold column is gold: an empty cell (or ``N/A``, ``not stated``…) says the
document does not state the variable. Values are read with the rules reviewers' corrections
follow (:func:`extraction.review.feedback.normalise_value`: ``"1,200"`` → 1200, ``"phase 2"``
→ ``"Phase 2"``, partial ISO dates kept as they are, an ambiguous ``03/04/2021`` refused).

``--gold feedback`` takes the reviewed cells instead: the newest verdict per document ×
variable, its right value being the extracted one when confirmed, else the correction.

Nothing is lost on bad input: each unknown document or variable, duplicate cell and value
that does not parse becomes a :class:`GoldProblem` naming its row and column (rows counted
as a spreadsheet shows them, the header being row 1), and the rest is evaluated. ``strict``
turns any problem into a :class:`~extraction.errors.ValidationError` listing them all.
"""

from __future__ import annotations

import csv
import math
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session

from extraction.errors import ValidationError
from extraction.models import Document, Project, Variable, VariableType

__all__ = ["FEEDBACK", "GoldCell", "GoldProblem", "GoldSet", "gold_from_feedback", "load_gold",
           "read_gold_file"]

#: The ``--gold`` value that means "the reviewed cells".
FEEDBACK = "feedback"
_ID_COLUMNS = ("document_id",)
_NAME_COLUMNS = ("filename", "file", "document")
_LONG_COLUMNS = ("variable", "value")


@dataclass(slots=True)
class GoldCell:
    """The right value of one cell; ``row``/``column`` say where it came from."""

    document_id: str
    variable: str
    value: Any
    row: int | None = None
    column: str | None = None


@dataclass(frozen=True)
class GoldProblem:
    """One thing wrong in the gold, where it is, and what was done (the cell is skipped)."""

    message: str
    row: int | None = None
    column: str | None = None

    def where(self) -> str:
        parts = [f"row {self.row}" if self.row is not None else "",
                 f"column '{self.column}'" if self.column else ""]
        return ", ".join(p for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message


@dataclass
class GoldSet:
    """The gold cells that could be read, and the problems of the rest."""

    source: str
    shape: str  # wide / long / feedback
    cells: list[GoldCell] = field(default_factory=list)
    problems: list[GoldProblem] = field(default_factory=list)

    def raise_if_problems(self) -> None:
        """With ``--strict``: stop on the first problem, listing all of them."""
        if not self.problems:
            return
        first = self.problems[0]
        raise ValidationError(
            f"the gold data has {len(self.problems)} problem(s); the first: {first}",
            field=first.where() or None, instance=self.source,
            extra={"errors": [{"field": p.where() or "gold", "message": p.message}
                              for p in self.problems]},
        )


# --------------------------------------------------------------------------- reading files


def _cell_text(value: Any) -> Any:
    """A spreadsheet cell as a gold value: text stripped, dates as ISO text, None if blank."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def read_gold_file(path: Path) -> Iterator[tuple[int, list[Any]]]:
    """``(row number, cells)`` of a CSV or XLSX file, header first (row 1).

    Raises:
        ValidationError: a missing file or an extension other than .csv / .xlsx.
    """
    if not path.is_file():
        raise ValidationError(f"no gold file at {path}", field="gold", instance=str(path))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                yield number, [_cell_text(v) for v in row]
        return
    if suffix in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        workbook = load_workbook(path, read_only=True, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
                yield number, [_cell_text(v) for v in row]
        finally:
            workbook.close()
        return
    raise ValidationError(f"a gold file is .csv or .xlsx, not '{path.suffix or path.name}'",
                          field="gold", instance=str(path))


class _Documents:
    """The project's documents, found by id or by file name."""

    def __init__(self, session: Session, project: Project) -> None:
        self.by_id: dict[str, str] = {}
        self.by_name: dict[str, list[str]] = {}
        from extraction.evaluate.cells import canonical_id

        # ids as text, canonicalised by slicing: a UUID object per document costs more
        rows = session.execute(select(cast(Document.id, String), Document.filename)
                               .where(Document.project_id == project.id))
        for doc_id, filename in rows:
            key = canonical_id(doc_id)
            self.by_id[key] = key
            self.by_name.setdefault(filename, []).append(key)

    def find(self, ref: Any, *, by_id: bool | None) -> tuple[str | None, str | None]:
        """``(document id, None)`` or ``(None, why not)``; ``by_id`` None tries both."""
        text = str(ref).strip()
        if by_id is not False:
            found = None
            if len(text) in (32, 36):  # the lengths of a UUID's two spellings
                try:
                    found = self.by_id.get(str(uuid.UUID(text)))
                except ValueError:
                    found = None
            if found is not None:
                return found, None
            if by_id:
                return None, f"no document with id '{text}' in the project"
        names = self.by_name.get(text, [])
        if len(names) == 1:
            return names[0], None
        if len(names) > 1:
            return None, (f"{len(names)} documents are named '{text}'; use a document_id "
                          "column to say which")
        return None, f"no document named '{text}' in the project"


def _index(header: Sequence[Any]) -> dict[str, int]:
    return {str(h).strip().lower(): i for i, h in enumerate(header) if h is not None}


_PLAIN_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_ISO_DATE = re.compile(r"^\d{4}(?:-(\d{2})(?:-\d{2})?)?$")


def _fast(variable: Variable, raw: Any) -> Any:
    """The canonical value of the commonest spellings, or ``_SLOW`` for the full rules.

    Gold files are mostly plain numbers and ISO dates; these give what
    :func:`~extraction.review.feedback.normalise_value` gives, without its regex ladder.
    """
    if isinstance(raw, str):
        if variable.type is VariableType.NUMBER and _PLAIN_NUMBER.match(raw):
            return float(raw)
        if variable.type is VariableType.DATE and (match := _ISO_DATE.match(raw)):
            month = match.group(1)
            if len(raw) == 10:
                try:
                    date.fromisoformat(raw)
                except ValueError:
                    return _SLOW
            elif month is not None and not 1 <= int(month) <= 12:
                return _SLOW
            return raw
    elif variable.type is VariableType.NUMBER and isinstance(raw, (int, float)) \
            and not isinstance(raw, bool) and math.isfinite(raw):
        return float(raw)
    return _SLOW


_SLOW = object()


def _parse(variable: Variable, raw: Any) -> tuple[Any, str | None]:
    from extraction.review.corrections import normalise_value

    if raw is None:
        return None, None
    value = _fast(variable, raw)
    if value is not _SLOW:
        return value, None
    try:
        return normalise_value(variable, raw), None
    except ValidationError as exc:
        return None, exc.detail


class _Builder:
    """Collects cells and problems; refuses a second value for the same cell."""

    def __init__(self, gold: GoldSet) -> None:
        self.gold = gold
        self.seen: dict[tuple[str, str], int | None] = {}
        # the same spelling of a value parses the same way: categories, booleans and repeated
        # numbers are parsed once per variable
        self.parsed: dict[tuple[str, Any], tuple[Any, str | None]] = {}

    def problem(self, message: str, row: int | None, column: str | None) -> None:
        self.gold.problems.append(GoldProblem(message, row, column))

    def add(self, document_id: str, variable: Variable, raw: Any, row: int,
            column: str) -> None:
        key = (document_id, variable.name)
        if key in self.seen:
            self.problem(f"a second gold value for this document and '{variable.name}' "
                         f"(the first is on row {self.seen[key]}, which is kept)", row, column)
            return
        memo = (variable.name, raw)
        found = self.parsed.get(memo)
        if found is None:
            found = self.parsed[memo] = _parse(variable, raw)
        value, error = found
        if error is not None:
            self.problem(error, row, column)
            return
        self.seen[key] = row
        self.gold.cells.append(GoldCell(document_id, variable.name, value, row, column))


def _key_columns(index: dict[str, int]) -> tuple[int | None, int | None]:
    id_col = next((index[c] for c in _ID_COLUMNS if c in index), None)
    name_col = next((index[c] for c in _NAME_COLUMNS if c in index), None)
    return id_col, name_col


def _document(row: list[Any], id_col: int | None, name_col: int | None, docs: _Documents,
              ) -> tuple[str | None, str | None, str]:
    """The row's document, or why not; the third item is the column the key came from."""
    def cell(i: int | None) -> Any:
        return row[i] if i is not None and i < len(row) else None

    if cell(id_col) is not None:
        found, why = docs.find(cell(id_col), by_id=True)
        return found, why, "document_id"
    if cell(name_col) is not None:
        found, why = docs.find(cell(name_col), by_id=None)
        return found, why, "filename"
    return None, "no document_id or filename on this row", "document_id"


def load_gold(session: Session, project: Project, path: Path, variables: Sequence[Variable],
              *, strict: bool = False) -> GoldSet:
    """Read a gold file (wide or long, CSV or XLSX) against ``project``.

    Args:
        variables: the live variables to take gold for (others are ignored, not problems,
            when they are variables of the project).
        strict: raise on the first problem instead of skipping the cell.

    Raises:
        ValidationError: an unreadable file, a header without a document column, or with
            ``strict`` any problem.
    """
    from extraction import codebook

    wanted = {v.name: v for v in variables}
    known = {v.name for v in codebook.list_variables(session, project)}
    rows = read_gold_file(path)
    header = next(rows, None)
    if header is None:
        raise ValidationError(f"the gold file {path} is empty", field="gold", instance=str(path))
    index = _index(header[1])
    id_col, name_col = _key_columns(index)
    if id_col is None and name_col is None:
        raise ValidationError(
            f"the gold file {path.name} needs a 'document_id' or 'filename' column in its "
            "header (row 1)", field="gold", instance=str(path))
    shape = "long" if all(c in index for c in _LONG_COLUMNS) else "wide"
    gold = GoldSet(source=str(path), shape=shape)
    build = _Builder(gold)
    docs = _Documents(session, project)
    if shape == "wide":
        columns: list[tuple[int, str, Variable]] = []
        keys = {id_col, name_col}
        for i, name in enumerate(header[1]):
            if i in keys or name is None or str(name).strip().lower() in _NAME_COLUMNS:
                continue
            name = str(name).strip()
            if name in wanted:
                columns.append((i, name, wanted[name]))
            elif name not in known:
                build.problem(f"no variable '{name}' in the project; the column is skipped",
                              1, name)
        for number, row in rows:
            if all(v is None for v in row):
                continue
            document_id, why, key_column = _document(row, id_col, name_col, docs)
            if document_id is None:
                build.problem(f"{why}; the row is skipped", number, key_column)
                continue
            for i, name, variable in columns:
                build.add(document_id, variable, row[i] if i < len(row) else None, number, name)
    else:
        var_col, value_col = index["variable"], index["value"]
        for number, row in rows:
            if all(v is None for v in row):
                continue
            name = row[var_col] if var_col < len(row) else None
            name = str(name).strip() if name is not None else ""
            if name not in wanted:
                if name not in known:
                    build.problem(f"no variable '{name}' in the project; the row is skipped",
                                  number, "variable")
                continue
            document_id, why, key_column = _document(row, id_col, name_col, docs)
            if document_id is None:
                build.problem(f"{why}; the row is skipped", number, key_column)
                continue
            build.add(document_id, wanted[name],
                      row[value_col] if value_col < len(row) else None, number, "value")
    if strict:
        gold.raise_if_problems()
    return gold


def gold_from_feedback(session: Session, project: Project,
                       variables: Sequence[Variable]) -> GoldSet:
    """The reviewed cells as gold: per document × variable, the newest verdict's right value."""
    from extraction.review.feedback import effective_feedback
    from extraction.review.truths import truths_by_cell

    wanted = {v.id: v for v in variables}
    truths = truths_by_cell(list(effective_feedback(session, project).values()))
    gold = GoldSet(source=FEEDBACK, shape=FEEDBACK)
    for (document_id, variable_id), truth in truths.items():
        variable = wanted.get(variable_id)
        if variable is not None:
            gold.cells.append(GoldCell(str(document_id), variable.name, truth.value))
    return gold
