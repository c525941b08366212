"""`extractflow codebook …`: apply a YAML codebook file, or export a project as one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from extraction import codebook as codebook_service
from extraction.cli._common import JsonOption, console, db_session, emit_json, new_app
from extraction.codebook.file import apply_codebook, export_codebook, load_codebook
from extraction.errors import ConflictError

app = new_app("Codebook files: the whole project definition in one YAML file.")


@app.command("apply")
def apply(
    file: Path,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the diff, change nothing.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Create or update a project from a codebook file; prints what changed."""
    book = load_codebook(file)
    with db_session() as s:
        changes = apply_codebook(s, book, dry_run=dry_run)
        if not dry_run:
            project = codebook_service.get_project(s, book.project.name)
            schema_version = project.schema_version
        else:
            schema_version = None
    if json_out:
        emit_json({
            "project": book.project.name,
            "dry_run": dry_run,
            "schema_version": schema_version,
            "changes": [{"action": c.action, "target": c.target,
                         "fields": {k: {"old": o, "new": n} for k, (o, n) in c.fields.items()}}
                        for c in changes],
        })
        return
    verb = "Would apply" if dry_run else "Applied"
    if not changes:
        console.print(f"[bold]{book.project.name}[/] already matches {file}: nothing to change")
        return
    console.print(f"{verb} {len(changes)} change(s) to [bold]{book.project.name}[/]:")
    marks = {"add": "[green]+[/]", "delete": "[red]-[/]", "create-project": "[green]+[/]"}
    for c in changes:
        console.print(f"  {marks.get(c.action, '[yellow]~[/]')} ", end="")
        console.print(c.describe(), markup=False, highlight=False)
    if schema_version is not None:
        console.print(f"Schema version is now v{schema_version}")


@app.command("export")
def export(
    project: str,
    output: Annotated[Optional[Path], typer.Option("--output", "-o",
                      help="Write to this file instead of printing.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a project's codebook as YAML (the format `codebook apply` reads)."""
    with db_session() as s:
        text = export_codebook(s, project)
    if output is None:
        typer.echo(text, nl=False)
        return
    if output.exists() and not force:
        raise ConflictError(f"{output} exists; use --force to overwrite", instance=str(output))
    output.write_text(text, encoding="utf-8")
    console.print(f"Wrote {output}")
