"""Read a project's extractions out of the database and into DuckDB, a batch at a time.

Which value is exported (the selection rule):

* With a job id: every extraction of that job (a sample job gives the sample's documents).
* Without: for each document × live variable, the **newest successful answer** (status ok or
  not_found) among the COMPLETE jobs that have a row for that cell, newest by ``finished_at``
  (then ``created_at``); only a cell that no job answered is exported with its newest failure.
  So a sample job followed by a full job gives the full job's values, a later re-run of a few
  documents replaces only those documents' values, and a run whose calls failed (a provider
  outage, a prompt the model cannot answer) never blanks a value an earlier run got right.
  Each cell carries the ``job_id`` it came from (the long format shows it; the metadata lists
  every job that contributed, with its count). Jobs that are not COMPLETE (running, failed,
  cancelled) never count.

Only the selected rows leave the database: the ranking runs in SQL as a window function, on
SQLite and PostgreSQL alike (skipped when the project has a single COMPLETE job, the common
case, where it would change nothing). Rows are streamed with ``yield_per`` (a server-side
cursor on PostgreSQL) in their raw database form, typed in Python
(:mod:`extraction.export.values`) and appended to a DuckDB table as Arrow record batches.
Document texts are never read unless ``include_document_text`` is asked, and then a batch at a
time by the writers (:class:`DocumentTexts`), so memory follows the number of extractions, not
the size of the corpus.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import Select, String, Text, case, cast, func, select, type_coerce
from sqlalchemy.orm import Session

from extraction import codebook
from extraction.errors import NotFoundError, StateError
from extraction.export.values import type_value
from extraction.models import (
    Document,
    Extraction,
    ExtractionStatus,
    JobStatus,
    ProcessingJob,
    Project,
    Prompt,
    VariableType,
)

__all__ = [
    "BATCH_SIZE",
    "CELLS_SCHEMA",
    "DocumentTexts",
    "ExportVariable",
    "Selection",
    "export_variables",
    "job_summaries",
    "load_cells",
]

#: Rows fetched from the database per round trip and appended to DuckDB per Arrow batch.
BATCH_SIZE = 5000
#: Documents per query when their full text is asked for (texts can be large).
TEXT_BATCH_SIZE = 500

CELLS_SCHEMA = pa.schema([
    ("document_id", pa.string()),
    ("filename", pa.string()),
    ("var_idx", pa.int32()),
    ("status", pa.string()),
    ("value_text", pa.string()),
    ("value_num", pa.float64()),
    ("value_bool", pa.bool_()),
    ("value_date", pa.date32()),
    ("value_list", pa.list_(pa.string())),
    ("confidence", pa.float64()),
    ("evidence", pa.string()),
    ("page", pa.int32()),
    ("prompt_version", pa.int32()),
    ("model", pa.string()),
    ("job_id", pa.string()),
    ("support", pa.string()),
])


@dataclass(frozen=True)
class ExportVariable:
    """A live codebook variable as exports need it; ``index`` is its codebook position."""

    index: int
    id: uuid.UUID
    name: str
    label: str
    type: VariableType
    instructions: str
    categories: tuple[str, ...] | None
    allow_other: bool
    multi_select: bool
    unit: str | None
    format_hint: str | None
    required: bool


@dataclass
class Selection:
    """What was loaded into DuckDB's ``cells`` table."""

    project: Project
    variables: list[ExportVariable]
    job_id: uuid.UUID | None
    cells: int


def export_variables(session: Session, project: Project) -> list[ExportVariable]:
    """The project's live variables in codebook order."""
    return [
        ExportVariable(
            index=i, id=v.id, name=v.name, label=v.label, type=v.type,
            instructions=v.instructions or "",
            categories=tuple(v.categories) if v.categories else None,
            allow_other=v.allow_other, multi_select=v.multi_select, unit=v.unit,
            format_hint=v.format_hint, required=v.required,
        )
        for i, v in enumerate(codebook.list_variables(session, project))
    ]


def _check_job(session: Session, project: Project, job_id: uuid.UUID) -> ProcessingJob:
    job = session.get(ProcessingJob, job_id)
    if job is None or job.project_id != project.id:
        raise NotFoundError(f"project '{project.name}' has no job {job_id}",
                            field="job_id", instance=str(job_id))
    return job


def _only_complete_job(session: Session, project: Project) -> uuid.UUID | None:
    """The project's COMPLETE job when there is exactly one (then no ranking is needed)."""
    ids = session.scalars(select(ProcessingJob.id).where(
        ProcessingJob.project_id == project.id, ProcessingJob.status == JobStatus.COMPLETE
    ).limit(2)).all()
    return ids[0] if len(ids) == 1 else None


def _selected_extractions(project: Project, variable_ids: Sequence[uuid.UUID]) -> Select[Any]:
    """Per cell, the newest successful extraction of a COMPLETE job (see the module docstring)."""
    newest_first = (
        func.coalesce(ProcessingJob.finished_at, ProcessingJob.created_at).desc(),
        ProcessingJob.created_at.desc(),
        ProcessingJob.id.desc(),
    )
    failed_last = case((Extraction.status == ExtractionStatus.FAILED, 1), else_=0)
    ranked = (
        select(
            Extraction.id.label("id"),
            func.row_number().over(
                partition_by=(Extraction.document_id, Extraction.variable_id),
                order_by=(failed_last, *newest_first),
            ).label("rank"),
        )
        .join(ProcessingJob, ProcessingJob.id == Extraction.job_id)
        .where(
            ProcessingJob.project_id == project.id,
            ProcessingJob.status == JobStatus.COMPLETE,
            Extraction.variable_id.in_(variable_ids),
        )
        .subquery("ranked")
    )
    return select(ranked.c.id).where(ranked.c.rank == 1)


def _rows_statement(selected: Select[Any] | None, job_id: uuid.UUID | None,
                   with_evidence: bool) -> Select[Any]:
    """The exported rows, every column in its raw database form.

    Ids come as text (``CAST``; canonicalised later in DuckDB), the value as its JSON text,
    status as a plain string: skipping SQLAlchemy's per-value type processing (UUID, JSON,
    enum objects) more than halves the time to read 100,000 rows.
    """
    columns: list[Any] = [
        cast(Extraction.document_id, String), Document.filename,
        cast(Extraction.variable_id, String), cast(Extraction.value, Text),
        type_coerce(Extraction.status, String), Extraction.confidence, Prompt.version,
        Extraction.model, cast(Extraction.job_id, String),
    ]
    if with_evidence:
        columns += [Extraction.evidence_quote, Extraction.evidence_page]
    columns.append(Extraction.support)  # always last: _batches reads it as columns[-1]
    statement = (
        select(*columns)
        .select_from(Extraction)
        .join(Document, Document.id == Extraction.document_id)
        .outerjoin(Prompt, Prompt.id == Extraction.prompt_id)
    )
    if selected is None:  # one job: a plain filter, no ranking needed
        return statement.where(Extraction.job_id == job_id)
    sub = selected.subquery("selected")
    return statement.join(sub, sub.c.id == Extraction.id)


def _batches(rows: Iterator[Sequence[Sequence[Any]]], variables: list[ExportVariable],
             with_evidence: bool) -> Iterator[pa.RecordBatch]:
    """Arrow batches in :data:`CELLS_SCHEMA`, built a column at a time."""
    index_of: dict[str, ExportVariable] = {}
    for v in variables:  # SQLite gives ids as 32 hex digits, PostgreSQL in canonical form
        index_of[v.id.hex] = index_of[str(v.id)] = v
    loads = json.loads
    for partition in rows:
        if not partition:
            continue
        columns = list(zip(*partition))
        found = [index_of[i] for i in columns[2]]
        typed = [type_value(v.type, v.multi_select, None if raw is None else loads(raw))
                 for v, raw in zip(found, columns[3])]
        empty = [None] * len(partition)
        yield pa.RecordBatch.from_arrays([
            pa.array(columns[0], pa.string()),
            pa.array(columns[1], pa.string()),
            pa.array([v.index for v in found], pa.int32()),
            pa.array(columns[4], pa.string()),
            pa.array([t.text for t in typed], pa.string()),
            pa.array([t.number for t in typed], pa.float64()),
            pa.array([t.boolean for t in typed], pa.bool_()),
            pa.array([t.date for t in typed], pa.date32()),
            pa.array([t.items for t in typed], pa.list_(pa.string())),
            pa.array(columns[5], pa.float64()),
            pa.array(columns[9] if with_evidence else empty, pa.string()),
            pa.array(columns[10] if with_evidence else empty, pa.int32()),
            pa.array(columns[6], pa.int32()),
            pa.array(columns[7], pa.string()),
            pa.array(columns[8], pa.string()),
            pa.array(columns[-1], pa.string()),
        ], schema=CELLS_SCHEMA)


#: Canonical UUID text whatever form the database gave (DuckDB parses both).
_CANONICAL = "CAST(CAST({0} AS UUID) AS VARCHAR) AS {0}"
_CELLS_COPY = ", ".join(
    _CANONICAL.format(name) if name in ("document_id", "job_id") else name
    for name in CELLS_SCHEMA.names
)


def load_cells(
    session: Session,
    con: duckdb.DuckDBPyConnection,
    project: Project,
    *,
    job_id: uuid.UUID | None = None,
    with_evidence: bool = False,
    batch_size: int = BATCH_SIZE,
) -> Selection:
    """Fill DuckDB's ``cells`` and ``variables`` tables with the project's selected values.

    Raises:
        NotFoundError: ``job_id`` is not a job of this project.
        StateError: there is nothing to export (no COMPLETE job yet, or an empty job).
    """
    variables = export_variables(session, project)
    if job_id is not None:
        _check_job(session, project, job_id)
    if not variables:
        raise StateError(f"project '{project.name}' has no variables, so nothing to export",
                         instance=project.name)
    single = job_id or _only_complete_job(session, project)
    selected = None if single else _selected_extractions(project, [v.id for v in variables])
    statement = _rows_statement(selected, single, with_evidence)
    if single:
        statement = statement.where(Extraction.variable_id.in_([v.id for v in variables]))
    # Core execution on the session's connection: rows, not ORM objects, a batch at a time
    # (a server-side cursor on PostgreSQL).
    result = session.connection().execute(statement.execution_options(yield_per=batch_size))
    reader = pa.RecordBatchReader.from_batches(
        CELLS_SCHEMA, _batches(result.partitions(), variables, with_evidence)
    )
    con.register("cells_stream", reader)
    try:
        con.execute(f"CREATE TABLE cells AS SELECT {_CELLS_COPY} FROM cells_stream")
    finally:
        con.unregister("cells_stream")
        result.close()
    _load_variables(con, variables)
    count = con.execute("SELECT count(*) FROM cells").fetchall()[0][0]
    if count == 0:
        if job_id is not None:
            raise StateError(f"job {job_id} has no extractions of the current variables",
                             field="job_id", instance=str(job_id))
        raise StateError(
            f"project '{project.name}' has no COMPLETE job with extractions yet: run the "
            "project first, or export a given job with --job",
            instance=project.name,
        )
    return Selection(project=project, variables=variables, job_id=job_id, cells=count)


def _load_variables(con: duckdb.DuckDBPyConnection, variables: list[ExportVariable]) -> None:
    table = pa.table({
        "var_idx": pa.array([v.index for v in variables], pa.int32()),
        "variable": pa.array([v.name for v in variables], pa.string()),
        "type": pa.array([v.type.value for v in variables], pa.string()),
    })
    con.register("variables_arrow", table)
    con.execute("CREATE TABLE variables AS SELECT * FROM variables_arrow")
    con.unregister("variables_arrow")


class DocumentTexts:
    """Full texts of documents, fetched a batch of ids at a time as writers need them.

    Texts never go through DuckDB: joining and sorting them there makes it hold several copies
    of the corpus at once. Writers stream rows in output order and ask for the texts of one
    batch of documents at a time, so memory follows the batch, not the corpus.
    """

    def __init__(self, session: Session, project: Project) -> None:
        self._session = session
        self._project_id = project.id

    def get(self, document_ids: Sequence[str]) -> dict[str, str | None]:
        """``{document id: text}`` for the given canonical ids (unknown ids are left out)."""
        wanted = list(dict.fromkeys(document_ids))
        found: dict[str, str | None] = {}
        for start in range(0, len(wanted), TEXT_BATCH_SIZE):
            chunk = [uuid.UUID(i) for i in wanted[start:start + TEXT_BATCH_SIZE]]
            rows = self._session.execute(
                select(Document.id, Document.text).where(
                    Document.project_id == self._project_id, Document.id.in_(chunk)))
            found.update((str(doc_id), text) for doc_id, text in rows)
        return found


def _naive_utc(value: datetime) -> datetime:
    # SQLite hands back naive UTC timestamps, PostgreSQL aware ones: compare them as naive UTC.
    if value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def job_summaries(session: Session, con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The jobs whose values were exported, newest first, with how many cells each gave."""
    counts = dict(con.execute(
        "SELECT job_id, count(*) FROM cells GROUP BY job_id").fetchall())
    if not counts:
        return []
    jobs = session.scalars(
        select(ProcessingJob).where(ProcessingJob.id.in_([uuid.UUID(j) for j in counts]))
    ).all()
    jobs = sorted(jobs, key=lambda j: _naive_utc(j.finished_at or j.created_at), reverse=True)
    return [
        {
            "job_id": str(job.id),
            "kind": job.kind.value,
            "status": job.status.value,
            "model": job.model,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "documents_total": job.documents_total,
            "documents_completed": job.documents_completed,
            "documents_failed": job.documents_failed,
            "llm_calls": job.llm_calls,
            "tokens_in": job.tokens_in,
            "tokens_out": job.tokens_out,
            "cost_usd": job.cost_usd,
            # the run's own words for a job without a price (see extraction/run/summary.py)
            "cost": (f"${job.cost_usd:.4f}" if job.cost_usd is not None
                     else "unknown price" if job.llm_calls else "$0 (no LLM call)"),
            "tokens_cached": job.tokens_cached or 0,
            "cells_exported": counts[str(job.id)],
        }
        for job in jobs
    ]
