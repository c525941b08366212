"""`extractflow review …`: review a job's results in a workbook (xlsx) or an HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from extraction.cli._common import JsonOption, console, db_session, emit_json, err_console, new_app

app = new_app("Review a job's results: an xlsx workbook or an HTML page; import the verdicts.")


@app.command("export")
def export(
    job: Annotated[str, typer.Argument(help="The job to review (id or id prefix).")],
    file: Annotated[Path, typer.Argument(help="Where to write the .xlsx workbook.")],
    json_out: JsonOption = False,
) -> None:
    """Write one row per extraction, with yes/no and category dropdowns to fill in."""
    from extraction.review.workbook_export import export_review_workbook

    with db_session() as s:
        summary = export_review_workbook(s, job, file)
    if json_out:
        emit_json({"path": str(summary.path), "job_id": str(summary.job_id),
                   "rows": summary.rows, "prefilled": summary.prefilled})
        return
    already = f", {summary.prefilled} already reviewed" if summary.prefilled else ""
    console.print(f"Wrote {summary.rows} row(s){already} to ", end="")
    console.print(str(summary.path), markup=False, highlight=False)
    console.print("Fill in 'correct?', 'corrected value' and 'comment', then run "
                  f"`extractflow review import {summary.path.name}`.", markup=False)


@app.command("html")
def html(
    job: Annotated[str, typer.Argument(help="The job to review (id or id prefix).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .html file to write.")]
    = Path("review.html"),
    min_confidence: Annotated[float | None, typer.Option(
        "--min-confidence", min=0.0, max=1.0,
        help="Values below it count as low-confidence; the page opens showing only those.")]
    = None,
    variable: Annotated[str | None, typer.Option(
        "--variable", help="Open showing only this variable's values.")] = None,
    status: Annotated[str | None, typer.Option(
        "--status", help="Open showing only values of this status: ok, not_found, failed.")]
    = None,
    sort: Annotated[str, typer.Option(
        "--sort", help="document (by file name) or confidence (least confident first).")]
    = "document",
    json_out: JsonOption = False,
) -> None:
    """Write one self-contained page: each value beside its highlighted evidence, verdicts.

    The options only set the filters the page opens with; every value of the job is in the
    page, so the reviewer can change them there.
    """
    from extraction.review.page import write_review_page

    with db_session() as s:
        summary = write_review_page(s, job, output, min_confidence=min_confidence,
                                    variable=variable, status=status, sort=sort)
    if json_out:
        emit_json({"path": str(summary.path), "job_id": str(summary.job_id),
                   "documents": summary.documents, "values": summary.values,
                   "highlighted": summary.drawn, "bytes": summary.bytes})
        return
    console.print(f"Wrote the review page of job {summary.job_id} ({summary.documents} "
                  f"document(s), {summary.values} value(s), {summary.drawn} highlighted) to ",
                  end="", markup=False)
    console.print(str(summary.path.resolve()), markup=False, highlight=False)
    console.print("Open it in a browser; export the verdicts from the page, then run "
                  "`extractflow review import <the exported file>`.", markup=False)


def _import_workbook(file: Path, json_out: bool) -> None:
    from config.settings import get_settings
    from extraction.input_files import check_workbook
    from extraction.review.workbook_import import import_review_workbook

    check_workbook(file, limit=get_settings().max_input_file_bytes)

    with db_session() as s:
        report = import_review_workbook(s, file)
    data = {"path": str(report.path), "rows": report.rows, "blank": report.blank,
            "created": report.created, "updated": report.updated,
            "unchanged": report.unchanged}
    if json_out:
        emit_json(data)
        return
    console.print(f"Imported {file.name}: {report.created} new, {report.updated} updated, "
                  f"{report.unchanged} unchanged verdict(s); {report.blank} blank row(s) "
                  "skipped", markup=False)


def _import_verdicts(file: Path, job: str | None, json_out: bool) -> None:
    from config.settings import get_settings
    from extraction.input_files import check_workbook
    from extraction.review.verdict_files import import_verdict_file

    # the same bound as a workbook's: a regular file of at most max_input_file_bytes
    check_workbook(file, limit=get_settings().max_input_file_bytes, what="verdict file")

    with db_session() as s:  # the valid rows are committed even when others are refused
        report = import_verdict_file(s, file, job=job)
    problems = [p.to_dict() for p in report.problems]
    if json_out:
        emit_json({"path": str(report.path), "job_id": report.job_id, "rows": report.rows,
                   "created": report.created, "updated": report.updated,
                   "unchanged": report.unchanged, "refused": len(problems),
                   "problems": problems})
    else:
        console.print(f"Imported {file.name}: {report.created} new, {report.updated} updated, "
                      f"{report.unchanged} unchanged verdict(s); {len(problems)} row(s) "
                      "refused", markup=False)
        for p in report.problems:
            where = f" ({p.label})" if p.label else ""
            err_console.print(f"  row {p.row}{where}: {p.message}", markup=False,
                              highlight=False)
    if problems:
        raise typer.Exit(1)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(
        help="A workbook from `review export` (.xlsx), or verdicts exported by the review "
             "page (.json or .csv).")],
    job: Annotated[str | None, typer.Option(
        "--job", help="Page verdicts only: refuse rows that are not of this job.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Import verdicts as feedback.

    A workbook is all or nothing. A page's verdict file is imported row by row: each refused
    row is reported with its reason, the others are stored, and the exit code is 1 when any
    row was refused.
    """
    if file.suffix.lower() in {".xlsx", ".xlsm"}:
        if job is not None:
            err_console.print("--job applies to the review page's verdict files; a workbook "
                              "names its extractions itself", markup=False)
        _import_workbook(file, json_out)
    else:
        _import_verdicts(file, job, json_out)
