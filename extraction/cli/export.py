"""`extractflow export PROJECT --format … -o PATH`: the project's dataset as a file.

By default the export runs right here (no Prefect start-up: an export is one query and one
file); ``--via-flow`` runs it as the ``export-dataset`` flow instead, so it shows in the
Prefect UI with its report artifact.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from extraction.cli._common import JsonOption, console, db_session, emit_json
from extraction.errors import ExtractflowError
from extraction.export import ExportFormat, ExportOptions, export_project

__all__ = ["export_command"]

FORMATS = ", ".join(f.value for f in ExportFormat)


def _hide_run_logs(record: logging.LogRecord) -> bool:
    return not record.name.startswith(("prefect", "flows", "tasks"))


def _run_flow(project: str, options: ExportOptions) -> dict[str, Any]:
    """Run the export-dataset flow here; its failure is reported like any other error."""
    from config.logging import quiet_prefect_environment

    quiet_prefect_environment()
    if logging.getLogger().level > logging.DEBUG:  # without --verbose: the error is printed
        # once, by the CLI; the run's logs still reach the Prefect API (and the UI).
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        for handler in logging.getLogger().handlers:
            handler.addFilter(_hide_run_logs)
    from flows.export_dataset import export_dataset

    try:
        return asyncio.run(export_dataset(
            project, format=options.format.value,
            output=str(options.output) if options.output is not None else None,
            job_id=str(options.job_id) if options.job_id else None,
            include_confidence=options.include_confidence,
            include_source_text=options.include_source_text,
            include_document_text=options.include_document_text,
            min_confidence=options.min_confidence, force=options.force,
        ))
    except ExtractflowError as exc:
        # Drop the engine's frames: they keep DuckDB objects alive until exit, where its
        # bindings would print a "nanobind: leaked …" report under the error message.
        exc.__context__ = exc.__cause__ = None
        raise exc.with_traceback(None) from None


def export_command(
    project: Annotated[str, typer.Argument(help="Project name or id.")],
    format: Annotated[str, typer.Option(
        "--format", "-f", help=f"One of: {FORMATS}.")] = "csv-wide",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="File to write (default: a new file in $EXTRACTFLOW_HOME/exports).",
        dir_okay=True, resolve_path=False)] = None,
    job: Annotated[str | None, typer.Option(
        "--job", help="Export this job only (default: for each document × variable, the "
                      "newest successful answer of a COMPLETE job).")] = None,
    include_confidence: Annotated[bool, typer.Option(
        "--include-confidence", help="Add each value's confidence.")] = False,
    include_source_text: Annotated[bool, typer.Option(
        "--include-source-text", help="Add each value's evidence quote and page.")] = False,
    include_document_text: Annotated[bool, typer.Option(
        "--include-document-text", help="Add each document's full text (large).")] = False,
    min_confidence: Annotated[float | None, typer.Option(
        "--min-confidence", help="Blank and flag values below this confidence (0–1).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    via_flow: Annotated[bool, typer.Option(
        "--via-flow", help="Run as the export-dataset Prefect flow (shows in the UI).")] = False,
    json_out: JsonOption = False,
) -> None:
    """Export the project's extractions as csv-wide, csv-long, xlsx, json or parquet."""
    options = ExportOptions(
        format=format, output=output, job_id=job, include_confidence=include_confidence,
        include_source_text=include_source_text, include_document_text=include_document_text,
        min_confidence=min_confidence, force=force,
    )
    if via_flow:
        data = _run_flow(project, options)
    else:
        with db_session() as s:
            data = export_project(s, project, options).to_dict()
    if json_out:
        emit_json(data)
        return
    unit = "extraction" if data["format"] == ExportFormat.CSV_LONG.value else "document"
    console.print(f"Wrote {data['path']}", markup=False, highlight=False)
    console.print(
        f"{data['format']}: {data['rows']} rows (one per {unit}) × {data['columns']} columns"
        f" · {data['documents']} documents, {data['extractions']} extractions"
        + (f", {data['flagged']} flagged below {options.min_confidence}"
           if options.min_confidence is not None else "")
        + f" · {len(data['job_ids'])} job(s) · {data['seconds']:.2f}s",
        markup=False, highlight=False,
    )
