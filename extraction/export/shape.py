"""Shape DuckDB's ``cells`` table into the wide and long tables that the writers serialise.

Wide is a pivot: one row per document, one column per live variable in codebook order. It is
written as one ``first(…) FILTER (WHERE var_idx = i)`` aggregate per output column — the
statement DuckDB's ``PIVOT`` expands to — because each column then keeps its own type (a
NUMBER variable stays a number beside a DATE one) and its own name and position, and the
column list does not depend on which variables happen to have values.

Every output column has one name, fixed up front in a :class:`Layout`: ``<variable>`` then,
when asked, ``<variable>__confidence`` and ``<variable>__support``, ``<variable>__evidence``,
``<variable>__page`` and, with a ``min_confidence``, ``<variable>__flagged``. Long (one row per
extraction) has ``document_id, filename, [document_text], variable, type, value, status, [confidence, support],
[evidence, page], prompt_version, model, job_id, [flagged]``: columns in brackets appear only
when their option is set, in every format.

A typed column (Parquet, JSON, the XLSX data sheet) takes the type of its variable — BIGINT
when every number is whole, else DOUBLE; BOOLEAN; DATE; VARCHAR[] for multi-select
categories — unless some value does not fit (a partial date such as ``2021-03``), in which case
the whole column is text, so no value is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import duckdb

from extraction.export.options import ExportOptions
from extraction.export.query import ExportVariable
from extraction.export.safety import ColumnNamer, quote_ident
from extraction.models import VariableType

__all__ = [
    "TEXT_INDEX",
    "TEXT_PLACEHOLDER",
    "Layout",
    "TypedKind",
    "VariableColumns",
    "create_shaped_view",
    "long_sql",
    "plan_layout",
    "wide_sql",
]

TypedKind = Literal["integer", "number", "boolean", "date", "list", "text"]
#: Where the document text goes: an empty column the writers fill batch by batch (third, after
#: document_id and filename), since texts never enter DuckDB (see ``query.DocumentTexts``).
TEXT_PLACEHOLDER = 'CAST(NULL AS VARCHAR) AS "document_text"'
TEXT_INDEX = 2
_TYPED_COLUMN = {"integer": "CAST(value_num AS BIGINT)", "number": "value_num",
                 "boolean": "value_bool", "date": "value_date", "list": "value_list",
                 "text": "value_text"}


@dataclass(frozen=True)
class VariableColumns:
    """The output columns of one variable in the wide table."""

    variable: ExportVariable
    value: str
    typed_kind: TypedKind
    confidence: str | None = None
    support: str | None = None  # beside confidence: supported / unsupported / not_checkable
    evidence: str | None = None
    page: str | None = None
    flagged: str | None = None
    status: str | None = None  # only for JSON's per-value metadata, never a file column


@dataclass(frozen=True)
class Layout:
    """Every column name and option of one export, decided once."""

    options: ExportOptions
    variables: list[VariableColumns]
    long_columns: list[str] = field(default_factory=list)

    @property
    def fixed_columns(self) -> list[str]:
        return ["document_id", "filename"] + (
            ["document_text"] if self.options.include_document_text else [])

    @property
    def wide_columns(self) -> list[str]:
        names = list(self.fixed_columns)
        for vc in self.variables:
            names += [c for c in (vc.value, vc.confidence, vc.support, vc.evidence, vc.page,
                                  vc.flagged) if c]
        return names

    @property
    def with_metadata(self) -> bool:
        """Whether JSON values carry their metadata ({value, status, confidence, …})."""
        o = self.options
        return o.include_confidence or o.include_source_text or o.min_confidence is not None


def _typed_kinds(con: duckdb.DuckDBPyConnection,
                 variables: list[ExportVariable]) -> dict[int, TypedKind]:
    """Each variable's column type: its own when every value fits, else text."""
    stats = {
        row[0]: row[1:]
        for row in con.execute(
            """SELECT var_idx, count(value_text), count(value_num), count(value_bool),
                      count(value_date), count(value_list),
                      coalesce(bool_and(value_num = trunc(value_num)
                                        AND abs(value_num) < 9007199254740992), true)
               FROM cells GROUP BY var_idx"""
        ).fetchall()
    }
    kinds: dict[int, TypedKind] = {}
    for v in variables:
        n_text, n_num, n_bool, n_date, n_list, whole = stats.get(v.index, (0, 0, 0, 0, 0, True))
        if v.type is VariableType.NUMBER and n_num == n_text:
            kinds[v.index] = "integer" if whole else "number"
        elif v.type is VariableType.BOOLEAN and n_bool == n_text:
            kinds[v.index] = "boolean"
        elif v.type is VariableType.DATE and n_date == n_text:
            kinds[v.index] = "date"
        elif v.type is VariableType.CATEGORY and v.multi_select and n_list == n_text:
            kinds[v.index] = "list"
        else:
            kinds[v.index] = "text"
    return kinds


def plan_layout(con: duckdb.DuckDBPyConnection, variables: list[ExportVariable],
                options: ExportOptions) -> Layout:
    """Name every column (safe, unique, fixed columns first) and pick each column's type."""
    long_columns = ["document_id", "filename"]
    if options.include_document_text:
        long_columns.append("document_text")
    long_columns += ["variable", "type", "value", "status"]
    if options.include_confidence:
        long_columns += ["confidence", "support"]
    if options.include_source_text:
        long_columns += ["evidence", "page"]
    long_columns += ["prompt_version", "model", "job_id"]
    if options.min_confidence is not None:
        long_columns.append("flagged")

    fixed = ["document_id", "filename", "document_text"]
    namer = ColumnNamer(fixed)
    kinds = _typed_kinds(con, variables)
    value_names = {v.index: namer.take(v.name) for v in variables}
    planned: list[VariableColumns] = []
    for v in variables:
        planned.append(VariableColumns(
            variable=v,
            value=value_names[v.index],
            typed_kind=kinds[v.index],
            confidence=namer.take(f"{v.name}__confidence") if options.include_confidence else None,
            support=namer.take(f"{v.name}__support") if options.include_confidence else None,
            evidence=namer.take(f"{v.name}__evidence") if options.include_source_text else None,
            page=namer.take(f"{v.name}__page") if options.include_source_text else None,
            flagged=(namer.take(f"{v.name}__flagged")
                     if options.min_confidence is not None else None),
            status=namer.take(f"{v.name}__status"),
        ))
    return Layout(options=options, variables=planned, long_columns=long_columns)


def create_shaped_view(con: duckdb.DuckDBPyConnection, options: ExportOptions) -> None:
    """The ``shaped`` view: cells with their variable's name and type, and the flag."""
    if options.min_confidence is None:
        flagged = "FALSE"
    else:
        # A value without a confidence cannot be shown to meet the threshold, so it is flagged.
        flagged = (f"(value_text IS NOT NULL AND "
                   f"(confidence IS NULL OR confidence < {float(options.min_confidence)!r}))")
    con.execute(
        f"""CREATE OR REPLACE VIEW shaped AS
            SELECT c.*, v.variable, v.type, {flagged} AS flagged
            FROM cells c JOIN variables v USING (var_idx)"""
    )


def _safe(expr: str, neutralise: bool) -> str:
    return f"xf_safe({expr})" if neutralise else expr


def wide_sql(layout: Layout, *, typed: bool, neutralise: bool = False,
             with_status: bool = False) -> str:
    """SELECT for the wide table: typed values (Parquet/JSON/XLSX) or text (CSV).

    ``neutralise`` wraps every text column in ``xf_safe`` (CSV); ``with_status`` adds each
    variable's status column, which only the JSON writer reads.
    """
    aggregates: list[str] = []
    outer: list[str] = [_safe("w.document_id", neutralise) + ' AS "document_id"',
                        _safe("w.filename", neutralise) + ' AS "filename"']
    if layout.options.include_document_text:
        outer.append(TEXT_PLACEHOLDER)
    for vc in layout.variables:
        where = f"FILTER (WHERE var_idx = {vc.variable.index})"
        value_expr = _TYPED_COLUMN[vc.typed_kind] if typed else "value_text"
        is_text = not typed or vc.typed_kind == "text"
        columns: list[tuple[str, str, bool]] = [
            (vc.value, f"first(CASE WHEN flagged THEN NULL ELSE {value_expr} END) {where}",
             is_text)]
        if vc.confidence:
            columns.append((vc.confidence, f"first(confidence) {where}", False))
        if vc.support:
            columns.append((vc.support, f"first(support) {where}", True))
        if vc.evidence and vc.page:
            columns.append((vc.evidence, f"first(evidence) {where}", True))
            columns.append((vc.page, f"first(page) {where}", False))
        if vc.flagged:
            columns.append((vc.flagged, f"coalesce(bool_or(flagged) {where}, FALSE)", False))
        if with_status and vc.status:
            columns.append((vc.status, f"first(status) {where}", False))
        for name, aggregate, text_column in columns:
            ident = quote_ident(name)
            aggregates.append(f"{aggregate} AS {ident}")
            outer.append(_safe(f"w.{ident}", neutralise and text_column) + f" AS {ident}")
    return (
        f"WITH w AS (SELECT document_id, filename, {', '.join(aggregates)} "
        f"FROM shaped GROUP BY document_id, filename) "
        f"SELECT {', '.join(outer)} FROM w ORDER BY w.filename, w.document_id"
    )


def long_sql(layout: Layout, *, neutralise: bool = False, typed_values: bool = False,
             document_text: bool | None = None) -> str:
    """SELECT for the long table, in ``layout.long_columns`` order.

    ``typed_values`` appends ``value_num, value_bool, value_date`` (blank when flagged) after
    the named columns, for writers that type each cell (XLSX).
    """
    with_text = layout.options.include_document_text if document_text is None else document_text
    text_columns = {"document_id", "filename", "document_text", "variable", "type", "value",
                    "status", "support", "evidence", "model", "job_id"}
    expressions = {"value": "CASE WHEN s.flagged THEN NULL ELSE s.value_text END"}
    select: list[str] = []
    for name in layout.long_columns:
        if name == "document_text" and not with_text:
            continue
        if name == "document_text":
            select.append(TEXT_PLACEHOLDER)
            continue
        expr = expressions.get(name, f"s.{quote_ident(name)}")
        select.append(_safe(expr, neutralise and name in text_columns) + f" AS {quote_ident(name)}")
    if typed_values:
        for extra in ("value_num", "value_bool", "value_date"):
            select.append(f"CASE WHEN s.flagged THEN NULL ELSE s.{extra} END AS {extra}")
    return (f"SELECT {', '.join(select)} FROM shaped s "
            "ORDER BY s.filename, s.document_id, s.var_idx")
