"""The extracted values to evaluate, read with the export query layer's selection rule.

Evaluation must judge the values a user would export, so it reads them the way exports do
(:func:`extraction.export.query.load_cells`): with a job, that job's extractions; without,
per document × variable the newest COMPLETE job's value. The rows go through an in-memory
DuckDB table (streamed from the database a batch at a time) and come back as one small
:class:`ExtractedCell` per cell.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from extraction.models import Project, VariableType

__all__ = ["Extracted", "ExtractedCell", "load_extracted"]


@dataclass(frozen=True, slots=True)
class ExtractedCell:
    """One stored extraction, as evaluation needs it."""

    value: Any
    status: str
    confidence: float | None
    prompt_version: int | None
    model: str | None
    job_id: str
    filename: str

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass
class Extracted:
    """The selected cells by ``(document id, variable name)``, and the jobs they came from."""

    cells: dict[tuple[str, str], ExtractedCell]
    jobs: list[dict[str, Any]]


def _value(vtype: str, multi: bool, text: Any, number: Any, boolean: Any, items: Any) -> Any:
    if text is None:
        return None
    if vtype == VariableType.NUMBER.value:
        return number if number is not None else text
    if vtype == VariableType.BOOLEAN.value:
        return boolean if boolean is not None else text
    if vtype == VariableType.CATEGORY.value and multi:
        return list(items) if items is not None else text
    return text


def load_extracted(session: Session, project: Project, *,
                   job_id: uuid.UUID | None = None) -> Extracted:
    """The project's selected extractions (see the module docstring).

    Raises:
        NotFoundError: ``job_id`` is not a job of the project.
        StateError: nothing to evaluate (no COMPLETE job, or an empty job).
    """
    import duckdb

    from extraction.export.query import job_summaries, load_cells

    con = duckdb.connect()
    try:
        selection = load_cells(session, con, project, job_id=job_id)
        multi = {v.name: v.multi_select for v in selection.variables}
        rows = con.execute(
            "SELECT c.document_id, v.variable, v.type, c.status, c.value_text, c.value_num, "
            "c.value_bool, c.value_list, c.confidence, c.prompt_version, c.model, c.job_id, "
            "c.filename FROM cells c JOIN variables v USING (var_idx)").fetchall()
        cells = {
            (doc, name): ExtractedCell(
                value=_value(vtype, multi[name], text, number, boolean, items),
                status=status, confidence=confidence, prompt_version=version, model=model,
                job_id=job, filename=filename)
            for (doc, name, vtype, status, text, number, boolean, items, confidence, version,
                 model, job, filename) in rows
        }
        jobs = job_summaries(session, con)
    finally:
        con.close()
    return Extracted(cells=cells, jobs=jobs)
