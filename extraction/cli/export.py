"""`extractflow export PROJECT --format … -o PATH`: the project's dataset as a file.

By default the export runs right here (no Prefect start-up: an export is one query and one
file); ``--via-flow`` runs it as the ``export-dataset`` flow instead, so it shows in the
Prefect UI with its report artifact.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from extraction.cli._common import JsonOption, console, db_session, emit_json, err_console
from extraction.errors import ExtractflowError, ValidationError
from extraction.export import ExportFormat, ExportOptions, export_project
from extraction.run import jobs

__all__ = ["export_command"]

FORMATS = ", ".join(f.value for f in ExportFormat)


def _hide_run_logs(record: logging.LogRecord) -> bool:
    return not record.name.startswith(("prefect", "flows", "tasks"))


def _run_flow(project: str, options: ExportOptions) -> dict[str, Any]:
    """Run the export-dataset flow here; its failure is reported like any other error."""
    from config.logging import quiet_prefect_environment, set_prefect_console_level

    quiet_prefect_environment()
    if logging.getLogger().level > logging.DEBUG:  # without --verbose: the error is printed
        # once, by the CLI; the run's logs still reach the Prefect API (and the UI).
        set_prefect_console_level("CRITICAL")
        for handler in logging.getLogger().handlers:
            handler.addFilter(_hide_run_logs)
    from flows._server import start_embedded_server
    from flows.export_dataset import export_dataset

    start_embedded_server()  # gone with this command, however it ends

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


def _is_prefix(ref: str) -> bool:
    text = ref.strip().lower().replace("-", "")
    return 6 <= len(text) < 32 and all(c in "0123456789abcdef" for c in text)


_TEXT_FORMATS = {ExportFormat.CSV_WIDE.value, ExportFormat.CSV_LONG.value, ExportFormat.JSON.value}


def _check_stdout(format: str, json_out: bool) -> None:
    """``-o -`` writes the data itself to standard output: text formats only, no --json."""
    format = ExportFormat.parse(format).value
    if format not in _TEXT_FORMATS:
        raise ValidationError(
            f"-o - writes to standard output, which takes text formats only "
            f"({', '.join(sorted(_TEXT_FORMATS))}); give a file name for {format}",
            field="output")
    if json_out:
        raise ValidationError("--json and -o - would both write to standard output; "
                              "drop one of them", field="output")


def export_command(
    project: Annotated[str, typer.Argument(help="Project name or id.")],
    format: Annotated[str, typer.Option(
        "--format", "-f", help=f"One of: {FORMATS}.")] = "csv-wide",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="File to write (default: a new file in $EXTRACTFLOW_HOME/exports); "
        "'-' writes a text format to standard output.",
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
    to_stdout = output is not None and str(output) == "-"
    with tempfile.TemporaryDirectory(prefix="extractflow-export-") as scratch:
        if to_stdout:
            _check_stdout(format, json_out)
            output = Path(scratch) / "export"
        data = _export(project, format, output, job, include_confidence, include_source_text,
                       include_document_text, min_confidence, force, via_flow)
        if to_stdout:
            with open(data["path"], "rb") as written:
                shutil.copyfileobj(written, sys.stdout.buffer)
            sys.stdout.flush()
            data["path"] = "-"
    if json_out:
        emit_json(data)
        return
    out = err_console if to_stdout else console  # stdout carries the data itself
    unit = "extraction" if data["format"] == ExportFormat.CSV_LONG.value else "document"
    out.print(f"Wrote {data['path'] if not to_stdout else 'standard output'}", markup=False,
              highlight=False)
    out.print(
        f"{data['format']}: {data['rows']} rows (one per {unit}) × {data['columns']} columns"
        f" · {data['documents']} documents, {data['extractions']} extractions"
        + (f", {data['flagged']} flagged below {min_confidence}"
           if min_confidence is not None else "")
        + f" · {len(data['job_ids'])} job(s) · {data['seconds']:.2f}s",
        markup=False, highlight=False,
    )


def _export(project: str, format: str, output: Path | None, job: str | None,
            include_confidence: bool, include_source_text: bool, include_document_text: bool,
            min_confidence: float | None, force: bool, via_flow: bool) -> dict[str, Any]:
    if job is not None and _is_prefix(job):  # the 8 characters `job list` shows
        with db_session() as s:
            job = str(jobs.get_job(s, job).id)
    options = ExportOptions(
        format=format, output=output, job_id=job, include_confidence=include_confidence,
        include_source_text=include_source_text, include_document_text=include_document_text,
        min_confidence=min_confidence, force=force,
    )
    if via_flow:
        return _run_flow(project, options)
    with db_session() as s:
        return export_project(s, project, options).to_dict()
