"""Export a project's dataset to a file: the one entry point the CLI, flows and notebooks use.

The steps: check the output path (before any work, so a typo costs nothing), load the selected
extractions into an in-memory DuckDB database (:mod:`.query`), name and type the columns
(:mod:`.shape`), and let the format's writer produce a temporary file next to the target,
which is then renamed into place — an interrupted export never leaves half a file under the
name the user asked for.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy.orm import Session

from config.settings import Settings, get_settings
from extraction import codebook
from extraction.errors import ValidationError
from extraction.export.options import ExportFormat, ExportOptions, ExportResult, default_output_path
from extraction.export.query import DocumentTexts, Selection, job_summaries, load_cells
from extraction.export.safety import install_sql_macros, resolve_output_path, sql_string
from extraction.export.shape import Layout, create_shaped_view, plan_layout
from extraction.export.writers import (
    Written,
    write_csv_long,
    write_csv_wide,
    write_json,
    write_parquet,
)
from extraction.export.xlsx import write_xlsx
from extraction.models import Project

__all__ = ["export_project", "output_path_for"]

Writer = Callable[[duckdb.DuckDBPyConnection, Layout, Path, dict[str, Any],
                   DocumentTexts | None], Written]
WRITERS: dict[ExportFormat, Writer] = {
    ExportFormat.CSV_WIDE: write_csv_wide,
    ExportFormat.CSV_LONG: write_csv_long,
    ExportFormat.XLSX: write_xlsx,
    ExportFormat.JSON: write_json,
    ExportFormat.PARQUET: write_parquet,
}


def output_path_for(project: Project, options: ExportOptions,
                    settings: Settings | None = None) -> Path:
    """The checked file to write: ``options.output``, or a new file in the exports folder."""
    if options.output is not None and str(options.output).strip():
        return resolve_output_path(options.output, force=options.force)
    exports_dir = (settings or get_settings()).exports_dir
    exports_dir.mkdir(parents=True, exist_ok=True)
    path = default_output_path(exports_dir, project.name, options.format,
                               datetime.now(UTC))
    return resolve_output_path(path, force=options.force)


def _duckdb() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    # Spill to the system temp folder (not the current directory) if memory runs short.
    spill = Path(tempfile.gettempdir()) / "extractflow-duckdb"
    con.execute(f"SET temp_directory = {sql_string(str(spill))}")
    install_sql_macros(con)
    return con


def _extractflow_version() -> str | None:
    try:
        return version("extractflow")
    except PackageNotFoundError:
        return None


def _metadata(session: Session, con: duckdb.DuckDBPyConnection, selection: Selection,
              layout: Layout, options: ExportOptions) -> dict[str, Any]:
    documents, flagged = con.execute(
        "SELECT count(DISTINCT document_id), count(*) FILTER (WHERE flagged) FROM shaped"
    ).fetchall()[0]
    prompt_versions = dict(con.execute(
        "SELECT var_idx, list(DISTINCT prompt_version ORDER BY prompt_version) FROM cells "
        "WHERE prompt_version IS NOT NULL GROUP BY var_idx").fetchall())
    project = selection.project
    return {
        "project": project.name,
        "project_id": str(project.id),
        "schema_version": project.schema_version,
        "exported_at": datetime.now(UTC),
        "extractflow_version": _extractflow_version(),
        "options": options.describe(),
        "documents": documents,
        "extractions": selection.cells,
        "flagged": flagged,
        "jobs": job_summaries(session, con),
        "variables": [
            {
                "position": vc.variable.index,
                "name": vc.variable.name,
                "column": vc.value,
                "label": vc.variable.label,
                "type": vc.variable.type.value,
                "exported_as": vc.typed_kind,
                "instructions": vc.variable.instructions,
                "categories": list(vc.variable.categories or []) or None,
                "allow_other": vc.variable.allow_other,
                "multi_select": vc.variable.multi_select,
                "unit": vc.variable.unit,
                "format_hint": vc.variable.format_hint,
                "required": vc.variable.required,
                "prompt_versions_used": prompt_versions.get(vc.variable.index, []),
            }
            for vc in layout.variables
        ],
    }


def export_project(
    session: Session,
    project_ref: str | uuid.UUID | Project,
    options: ExportOptions | None = None,
    *,
    settings: Settings | None = None,
) -> ExportResult:
    """Write the project's dataset in ``options.format`` and say what was written.

    Args:
        session: An open session; only read from.
        project_ref: The project, or its name or id.
        options: Format, job selection, columns to include, threshold and output path.
        settings: Where the default exports folder is (``settings.exports_dir``).

    Raises:
        NotFoundError: unknown project or job.
        StateError: nothing to export yet.
        ValidationError: a bad output path or option, or a file that cannot be written.
        ConflictError: the output file exists and ``options.force`` is not set.
    """
    started = time.perf_counter()
    options = options or ExportOptions()
    project = (project_ref if isinstance(project_ref, Project)
               else codebook.get_project(session, project_ref))
    path = output_path_for(project, options, settings)
    con = _duckdb()
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        job_id = options.job_id if isinstance(options.job_id, uuid.UUID) else None
        selection = load_cells(session, con, project, job_id=job_id,
                               with_evidence=options.include_source_text)
        create_shaped_view(con, options)
        layout = plan_layout(con, selection.variables, options)
        metadata = _metadata(session, con, selection, layout, options)
        try:
            texts = DocumentTexts(session, project) if options.include_document_text else None
            written = WRITERS[options.format](con, layout, partial, metadata, texts)
            resolve_output_path(path, force=options.force)  # still a file we may replace
            os.replace(partial, path)
        except OSError as exc:
            raise ValidationError(f"cannot write {path}: {exc.strerror or exc}",
                                  field="output", instance=str(path)) from exc
        except duckdb.IOException as exc:
            raise ValidationError(f"cannot write {path}: {exc}",
                                  field="output", instance=str(path)) from exc
    finally:
        con.close()
        partial.unlink(missing_ok=True)
    return ExportResult(
        path=path,
        format=options.format,
        project=project.name,
        rows=written.rows,
        columns=len(written.columns),
        column_names=written.columns,
        documents=metadata["documents"],
        extractions=metadata["extractions"],
        flagged=metadata["flagged"],
        job_ids=[j["job_id"] for j in metadata["jobs"]],
        options=options.describe(),
        seconds=round(time.perf_counter() - started, 3),
    )
