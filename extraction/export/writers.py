"""One function per file format (XLSX has its own module). Each writes ``path`` and returns
what it wrote as a :class:`Written` (rows and column names of the main table).

CSV and Parquet are written by DuckDB itself (``COPY … TO``; both are built into DuckDB, no
extension is downloaded), so they stream from DuckDB's tables without Python touching each
value. JSON is streamed a batch of documents at a time. With ``include_document_text`` every
writer streams rows instead and fills the text column a batch at a time
(:class:`~extraction.export.query.DocumentTexts`): the texts never sit in memory all at once.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from extraction.export.query import DocumentTexts
from extraction.export.safety import neutralise, sql_string
from extraction.export.shape import TEXT_INDEX, Layout, long_sql, wide_sql

__all__ = [
    "FETCH_SIZE",
    "Written",
    "json_default",
    "rows_with_texts",
    "write_csv_long",
    "write_csv_wide",
    "write_json",
    "write_parquet",
]

#: Rows fetched from DuckDB at a time by writers that serialise row by row.
FETCH_SIZE = 2000
#: Rows at a time when each carries its document's full text (bounds memory by the batch).
TEXT_FETCH_SIZE = 250


@dataclass(frozen=True)
class Written:
    rows: int
    columns: list[str]


def rows_with_texts(cursor: duckdb.DuckDBPyConnection, texts: DocumentTexts | None
                    ) -> Iterator[list[tuple[Any, ...]]]:
    """The cursor's rows, a batch at a time, with the document text filled in when asked."""
    while batch := cursor.fetchmany(FETCH_SIZE if texts is None else TEXT_FETCH_SIZE):
        if texts is None:
            yield batch
            continue
        found = texts.get([row[0] for row in batch])
        yield [(*row[:TEXT_INDEX], found.get(row[0]), *row[TEXT_INDEX + 1:]) for row in batch]


def _arrow_with_texts(reader: pa.RecordBatchReader, texts: DocumentTexts
                      ) -> Iterator[pa.RecordBatch]:
    for batch in reader:
        found = texts.get(batch.column(0).to_pylist())
        column = pa.array([found.get(i) for i in batch.column(0).to_pylist()], pa.string())
        yield batch.set_column(TEXT_INDEX, batch.schema.field(TEXT_INDEX), column)


def _columns(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    return list(con.sql(sql).columns)


def _copy(con: duckdb.DuckDBPyConnection, sql: str, path: Path, options: str) -> list[str]:
    columns = _columns(con, sql)
    con.execute(f"COPY ({sql}) TO {sql_string(str(path))} ({options})")
    return columns


def _csv_cell(value: Any) -> Any:
    # The same text DuckDB's CSV writer gives, so a file reads the same with or without texts.
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _write_csv(con: duckdb.DuckDBPyConnection, sql: str, path: Path,
               texts: DocumentTexts | None) -> list[str]:
    if texts is None:
        return _copy(con, sql, path, "FORMAT csv, HEADER true")
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description]
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for batch in rows_with_texts(cursor, texts):
            for row in batch:
                cells = [_csv_cell(v) for v in row]
                if cells[TEXT_INDEX]:
                    cells[TEXT_INDEX] = neutralise(cells[TEXT_INDEX])
                writer.writerow(cells)
    return columns


def _document_count(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT count(DISTINCT document_id) FROM cells").fetchall()[0][0]


def write_csv_wide(con: duckdb.DuckDBPyConnection, layout: Layout, path: Path,
                   metadata: dict[str, Any], texts: DocumentTexts | None = None) -> Written:
    """One row per document, one column per variable; text cells neutralised."""
    columns = _write_csv(con, wide_sql(layout, typed=False, neutralise=True), path, texts)
    return Written(_document_count(con), columns)


def write_csv_long(con: duckdb.DuckDBPyConnection, layout: Layout, path: Path,
                   metadata: dict[str, Any], texts: DocumentTexts | None = None) -> Written:
    """One row per extraction; text cells neutralised."""
    columns = _write_csv(con, long_sql(layout, neutralise=True), path, texts)
    return Written(metadata["extractions"], columns)


def write_parquet(con: duckdb.DuckDBPyConnection, layout: Layout, path: Path,
                  metadata: dict[str, Any], texts: DocumentTexts | None = None) -> Written:
    """The wide table with typed columns (see :mod:`extraction.export.shape`)."""
    sql = wide_sql(layout, typed=True)
    if texts is None:
        columns = _copy(con, sql, path, "FORMAT parquet, COMPRESSION zstd")
        return Written(_document_count(con), columns)
    reader = con.sql(sql).to_arrow_reader(TEXT_FETCH_SIZE)
    with pq.ParquetWriter(path, reader.schema, compression="zstd") as writer:
        for batch in _arrow_with_texts(reader, texts):
            # One row group per batch: the writer then never holds more than one batch of texts.
            writer.write_batch(batch, row_group_size=batch.num_rows)
    return Written(_document_count(con), list(reader.schema.names))


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
               metadata: dict[str, Any], texts: DocumentTexts | None = None) -> Written:
    """``{"export": {…metadata…}, "documents": [{document_id, filename, <var>: value, …}]}``.

    Values are typed (numbers, booleans, lists; dates as ISO strings). With confidence,
    source text or a threshold asked, each value is an object ``{value, status, confidence,
    support, evidence, page, flagged}`` holding the parts that were asked for.
    """
    cursor = con.execute(wide_sql(layout, typed=True, with_status=layout.with_metadata))
    names = [d[0] for d in cursor.description]
    fixed = layout.fixed_columns
    rows = 0
    with path.open("w", encoding="utf-8") as out:
        out.write('{"export": ')
        out.write(json.dumps(metadata, default=json_default, ensure_ascii=False))
        out.write(',\n"documents": [')
        for batch in rows_with_texts(cursor, texts):
            for row in batch:
                record = dict(zip(names, row, strict=True))
                obj: dict[str, Any] = {name: record[name] for name in fixed}
                for vc in layout.variables:
                    value = _json_value(record[vc.value])
                    if not layout.with_metadata:
                        obj[vc.value] = value
                        continue
                    meta: dict[str, Any] = {"value": value, "status": record[vc.status]}
                    if vc.confidence:
                        meta["confidence"] = record[vc.confidence]
                    if vc.support:
                        meta["support"] = record[vc.support]
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
