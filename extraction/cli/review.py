"""`extractflow review …`: a spreadsheet round trip for reviewing a job's results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from extraction.cli._common import JsonOption, console, db_session, emit_json, new_app
from extraction.review.workbook import export_review_workbook, import_review_workbook

app = new_app("Review workbooks: export a job's results to xlsx, fill in verdicts, import.")


@app.command("export")
def export(
    job: Annotated[str, typer.Argument(help="The job to review (id or id prefix).")],
    file: Annotated[Path, typer.Argument(help="Where to write the .xlsx workbook.")],
    json_out: JsonOption = False,
) -> None:
    """Write one row per extraction, with yes/no and category dropdowns to fill in."""
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


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A workbook written by `review export`.")],
    json_out: JsonOption = False,
) -> None:
    """Import the verdicts; nothing is stored unless every filled-in row is valid."""
    from config.settings import get_settings
    from extraction.input_files import check_workbook

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
