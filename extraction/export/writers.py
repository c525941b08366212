"""One function per file format (XLSX has its own module). Each writes ``path`` and returns
what it wrote as a :class:`Written` (rows and column names of the main table).

CSV and Parquet are written by DuckDB itself (``COPY … TO``; both are built into DuckDB, no
extension is downloaded), so they stream from DuckDB's tables without Python touching each
value. JSON is streamed a batch of documents at a time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb

from extraction.export.safety import sql_string
from extraction.export.shape import Layout, long_sql, wide_sql

__all__ = [
    "FETCH_SIZE",
    "Written",
    "json_default",
    "write_csv_long",
    "write_csv_wide",
    "write_json",
    "write_parquet",
]

#: Rows fetched from DuckDB at a time by writers that serialise row by row.
FETCH_SIZE = 2000


@dataclass(frozen=True)
class Written:
    rows: int
    columns: list[str]


def _copy(con: duckdb.DuckDBPyConnection, sql: str, path: Path, options: str) -> list[str]:
    columns = [d[0] for d in con.execute(f"SELECT * FROM ({sql}) LIMIT 0").description]
    con.execute(f"COPY ({sql}) TO {sql_string(str(path))} ({options})")
    return columns


def _document_count(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT count(DISTINCT document_id) FROM cells").fetchall()[0][0]


def write_csv_wide(con: duckdb.DuckDBPyConnection, layout: Layout, path: Path,
                   metadata: dict[str, Any]) -> Written:
    """One row per document, one column per variable; text cells neutralised."""
    columns = _copy(con, wide_sql(layout, typed=False, neutralise=True), path,
                    "FORMAT csv, HEADER true")
    return Written(_document_count(con), columns)


def write_csv_long(con: duckdb.DuckDBPyConnection, layout: Layout, path: Path,
                   metadata: dict[str, Any]) -> Written:
    """One row per extraction; text cells neutralised."""
    columns = _copy(con, long_sql(layout, neutralise=True), path, "FORMAT csv, HEADER true")
    return Written(metadata["extractions"], columns)


def write_parquet(con: duckdb.DuckDBPyConnection, layout: Layout, path: Path,
                  metadata: dict[str, Any]) -> Written:
    """The wide table with typed columns (see :mod:`extraction.export.shape`)."""
    columns = _copy(con, wide_sql(layout, typed=True), path,
                    "FORMAT parquet, COMPRESSION zstd")
    return Written(_document_count(con), columns)


def json_default(value: Any) -> Any:
    """JSON for the values DuckDB and the metadata hand back (dates, datetimes)."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(con: duckdb.DuckDBPyConnection, layout: Layout, path: Path,
               metadata: dict[str, Any]) -> Written:
    """``{"export": {…metadata…}, "documents": [{document_id, filename, <var>: value, …}]}``.

    Values are typed (numbers, booleans, lists; dates as ISO strings). With confidence,
    source text or a threshold asked, each value is an object ``{value, status, confidence,
    evidence, page, flagged}`` holding the parts that were asked for.
    """
    cursor = con.execute(wide_sql(layout, typed=True, with_status=layout.with_metadata))
    names = [d[0] for d in cursor.description]
    fixed = layout.fixed_columns
    rows = 0
    with path.open("w", encoding="utf-8") as out:
        out.write('{"export": ')
        out.write(json.dumps(metadata, default=json_default, ensure_ascii=False))
        out.write(',\n"documents": [')
        while batch := cursor.fetchmany(FETCH_SIZE):
            for row in batch:
                record = dict(zip(names, row))
                obj: dict[str, Any] = {name: record[name] for name in fixed}
                for vc in layout.variables:
                    value = _json_value(record[vc.value])
                    if not layout.with_metadata:
                        obj[vc.value] = value
                        continue
                    meta: dict[str, Any] = {"value": value, "status": record[vc.status]}
                    if vc.confidence:
                        meta["confidence"] = record[vc.confidence]
                    if vc.evidence and vc.page:
                        meta["evidence"] = record[vc.evidence]
                        meta["page"] = record[vc.page]
                    if vc.flagged:
                        meta["flagged"] = record[vc.flagged]
                    obj[vc.value] = meta
                out.write(",\n" if rows else "\n")
                out.write(json.dumps(obj, default=json_default, ensure_ascii=False))
                rows += 1
        out.write("\n]}\n")
    return Written(rows, layout.wide_columns)
