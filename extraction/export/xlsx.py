"""The Excel workbook: ``data`` (wide, typed), ``long``, ``codebook`` and ``run metadata``.

Written with openpyxl's write-only mode, which streams rows to the file instead of building
the whole sheet in memory (and is several times faster). Cells are typed: numbers are numbers,
full dates are dates (partial dates such as ``2021`` or ``2021-03`` stay text), booleans are
booleans. Text is neutralised against formula injection, stripped of the control characters
XML cannot hold (a PDF's page break ``\\f``) and cut at Excel's 32,767 characters per cell.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from extraction.errors import ValidationError
from extraction.export.query import DocumentTexts
from extraction.export.safety import neutralise
from extraction.export.shape import Layout, VariableColumns, long_sql, wide_sql
from extraction.export.values import LIST_SEPARATOR, type_value
from extraction.export.writers import FETCH_SIZE, Written, rows_with_texts
from extraction.models import VariableType

__all__ = ["MAX_CELL_CHARS", "MAX_ROWS", "excel_value", "write_xlsx"]

MAX_ROWS = 1_048_576
MAX_CELL_CHARS = 32_767
_TRUNCATED = " …[truncated]"
_BOLD = Font(bold=True)


def excel_value(value: Any) -> Any:
    """A value as a safe, typed Excel cell value."""
    if value is None or isinstance(value, (bool, int, date)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        value = LIST_SEPARATOR.join("" if v is None else str(v) for v in value)
    text = ILLEGAL_CHARACTERS_RE.sub("", str(value))
    if len(text) > MAX_CELL_CHARS:
        text = text[: MAX_CELL_CHARS - len(_TRUNCATED)] + _TRUNCATED
    return neutralise(text)


def _bold_row(ws: WriteOnlyWorksheet, values: Iterable[Any]) -> None:
    cells = []
    for value in values:
        cell = WriteOnlyCell(ws, value=excel_value(value))
        cell.font = _BOLD
        cells.append(cell)
    ws.append(cells)


def _retyper(vc: VariableColumns) -> Callable[[Any], Any] | None:
    """For a typed variable whose column fell back to text, type each cell that fits.

    Parquet needs one type per column, Excel does not: in a DATE column holding ``2021`` and
    ``2020-05-17``, the second is still written as a date cell and the first stays text.
    """
    if vc.typed_kind != "text":
        return None
    vtype = vc.variable.type
    if vtype in (VariableType.NUMBER, VariableType.BOOLEAN, VariableType.DATE):
        def retype(text: Any) -> Any:
            if not isinstance(text, str):
                return text
            typed = type_value(vtype, False, text)
            value = typed.number if typed.number is not None else (
                typed.boolean if typed.boolean is not None else typed.date)
            if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
                return int(value)
            return text if value is None else value
        return retype
    return None


#: Columns extractflow fills itself with ids and fixed words: nothing to clean or neutralise.
_TRUSTED_COLUMNS = frozenset({"document_id", "job_id", "variable", "type", "status"})


def _text_columns(description: Sequence[Any], count: int) -> list[int]:
    """Indexes of the first ``count`` columns whose cells need :func:`excel_value`.

    Numbers, booleans and dates go to openpyxl as they are; only text (and lists, joined)
    is cleaned and neutralised — a third of the per-cell work on a typical sheet.
    """
    return [i for i, d in enumerate(description[:count])
            if d[0] not in _TRUSTED_COLUMNS and (str(d[1]) == "VARCHAR"
                                                 or str(d[1]).endswith("[]"))]


def _write_data(wb: Workbook, con: duckdb.DuckDBPyConnection, layout: Layout,
                documents: int, texts: DocumentTexts | None) -> list[str]:
    ws = wb.create_sheet("data")
    cursor = con.execute(wide_sql(layout, typed=True))
    names = [d[0] for d in cursor.description]
    retypers = {names.index(vc.value): fn for vc in layout.variables
                if (fn := _retyper(vc)) is not None}
    convert = [(i, retypers.get(i)) for i in _text_columns(cursor.description, len(names))]
    _set_layout(ws, names, documents)
    _bold_row(ws, names)
    for batch in rows_with_texts(cursor, texts):
        for row in batch:
            cells = list(row)
            for i, retype in convert:
                value = cells[i]
                if value is not None:
                    cells[i] = excel_value(retype(value) if retype else value)
            ws.append(cells)
    return names


def _set_layout(ws: WriteOnlyWorksheet, names: Sequence[str], rows: int,
                widths: Sequence[int] | None = None) -> None:
    """Column widths, frozen header and filter; write-only sheets need them before any row."""
    for i, name in enumerate(names, start=1):
        width = widths[i - 1] if widths else min(max(len(name) + 2, 12), 40)
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = "A2"
    if names:
        ws.auto_filter.ref = f"A1:{get_column_letter(len(names))}{max(rows, 1) + 1}"


def _write_long(wb: Workbook, con: duckdb.DuckDBPyConnection, layout: Layout,
                extractions: int) -> str | None:
    """The long sheet, or a note saying why it was left out (Excel's row limit)."""
    ws = wb.create_sheet("long")
    if extractions >= MAX_ROWS:
        note = (f"{extractions} extractions exceed Excel's limit of {MAX_ROWS - 1} rows "
                "per sheet: export csv-long or parquet for the long form.")
        ws.append([note])
        return "long sheet omitted: too many extractions for Excel"
    cursor = con.execute(long_sql(layout, typed_values=True, document_text=False))
    names = [d[0] for d in cursor.description][:-3]
    value_at = names.index("value")
    text_at = [i for i in _text_columns(cursor.description, len(names)) if i != value_at]
    _set_layout(ws, names, extractions)
    _bold_row(ws, names)
    while batch := cursor.fetchmany(FETCH_SIZE):
        for row in batch:
            cells = list(row[:-3])
            number, boolean, day = row[-3:]
            if number is not None:
                cells[value_at] = int(number) if number.is_integer() \
                    and abs(number) < 1e15 else number
            elif boolean is not None:
                cells[value_at] = boolean
            elif day is not None:
                cells[value_at] = day
            elif cells[value_at] is not None:
                cells[value_at] = excel_value(cells[value_at])
            for i in text_at:
                if cells[i] is not None:
                    cells[i] = excel_value(cells[i])
            ws.append(cells)
    return None


_CODEBOOK_COLUMNS = ["position", "name", "column", "label", "type", "exported_as",
                     "instructions", "categories", "allow_other", "multi_select", "unit",
                     "format_hint", "required", "prompt_versions_used"]


def _write_codebook(wb: Workbook, metadata: dict[str, Any]) -> None:
    ws = wb.create_sheet("codebook")
    widths = [10, 24, 24, 28, 12, 12, 60, 40, 12, 12, 10, 20, 10, 20]
    _set_layout(ws, _CODEBOOK_COLUMNS, len(metadata["variables"]), widths)
    _bold_row(ws, _CODEBOOK_COLUMNS)
    for v in metadata["variables"]:
        ws.append([excel_value(x) for x in (
            v["position"] + 1, v["name"], v["column"], v["label"], v["type"], v["exported_as"],
            v["instructions"], v["categories"], v["allow_other"], v["multi_select"], v["unit"],
            v["format_hint"], v["required"],
            ", ".join(str(p) for p in v["prompt_versions_used"]) or None,
        )])


_JOB_COLUMNS = ["job_id", "kind", "status", "model", "started_at", "finished_at",
                "documents_total", "documents_completed", "documents_failed", "llm_calls",
                "tokens_in", "tokens_out", "cost_usd", "cells_exported"]


def _naive(value: Any) -> Any:
    # Excel has no time zones: timestamps are written in UTC without one (the header says so).
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _write_run_metadata(wb: Workbook, metadata: dict[str, Any], notes: list[str]) -> None:
    ws = wb.create_sheet("run metadata")
    for i, width in enumerate([24, 40, 12, 24, 22, 22, 12, 12, 12, 10, 12, 12, 10, 12], 1):
        ws.column_dimensions[get_column_letter(i)].width = width
    _bold_row(ws, ["setting", "value"])
    options = metadata["options"]
    pairs: list[tuple[str, Any]] = [
        ("project", metadata["project"]),
        ("project_id", metadata["project_id"]),
        ("schema_version", metadata["schema_version"]),
        ("exported_at (UTC)", _naive(metadata["exported_at"])),
        ("extractflow_version", metadata["extractflow_version"]),
        ("documents", metadata["documents"]),
        ("extractions", metadata["extractions"]),
        ("flagged (below min_confidence)", metadata["flagged"]),
        *((f"option: {k}", "" if v is None else v) for k, v in options.items()),
        *(("note", n) for n in notes),
    ]
    for key, value in pairs:
        ws.append([excel_value(key), excel_value(_naive(value))])
    ws.append([])
    _bold_row(ws, ["jobs (timestamps in UTC)"])
    _bold_row(ws, _JOB_COLUMNS)
    for job in metadata["jobs"]:
        ws.append([excel_value(_naive(job[c])) for c in _JOB_COLUMNS])
    jobs = metadata["jobs"]
    costs = [j["cost_usd"] for j in jobs if j["cost_usd"] is not None]
    _bold_row(ws, ["total", None, None, None, None, None,
                   *(sum(j[c] for j in jobs) for c in _JOB_COLUMNS[6:12]),
                   sum(costs) if costs else None, sum(j["cells_exported"] for j in jobs)])


def write_xlsx(con: duckdb.DuckDBPyConnection, layout: Layout, path: Path,
               metadata: dict[str, Any], texts: DocumentTexts | None = None) -> Written:
    """The four-sheet workbook; ``rows``/``columns`` describe the data sheet."""
    documents = metadata["documents"]
    if documents >= MAX_ROWS:
        raise ValidationError(
            f"{documents} documents exceed Excel's limit of {MAX_ROWS - 1} rows per sheet; "
            "export csv-wide or parquet instead", field="format")
    wb = Workbook(write_only=True)
    names = _write_data(wb, con, layout, documents, texts)
    notes = [n for n in [_write_long(wb, con, layout, metadata["extractions"])] if n]
    _write_codebook(wb, metadata)
    _write_run_metadata(wb, metadata, notes)
    wb.save(path)
    return Written(documents, names)
