"""`extractflow codebook …`: apply a YAML codebook file, or export a project as one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from extraction import codebook as codebook_service
from extraction.cli._common import (
    JsonOption,
    console,
    db_session,
    emit_json,
    err_console,
    new_app,
)
from extraction.codebook.file import apply_codebook, export_codebook, load_codebook
from extraction.errors import ConflictError, ValidationError

app = new_app("Codebook files: the whole project definition in one YAML file.")


@app.command("apply")
def apply(
    file: Path,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the diff, change nothing.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Create or update a project from a codebook file; prints what changed."""
    book = load_codebook(file)
    warnings: list[str] = []
    with db_session() as s:
        changes = apply_codebook(s, book, dry_run=dry_run)
        if not dry_run:
            project = codebook_service.get_project(s, book.project.name)
            schema_version = project.schema_version
            warnings = _check_prompts_fit(s, project)  # raises (rolls back) when one cannot
        else:
            schema_version = None
    for warning in warnings if not json_out else ():
        err_console.print(f"Warning: {warning}", markup=False, highlight=False)
    if json_out:
        emit_json({
            "project": book.project.name,
            "dry_run": dry_run,
            "schema_version": schema_version,
            "warnings": warnings,
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


def _check_prompts_fit(session: Any, project: Any) -> list[str]:
    """Refuse a variable whose prompt alone leaves no room for document text in
    ``llm_context_tokens`` (every document would fail); warn when only all variables
    together (per_document mode) do not fit."""
    from config.settings import get_settings
    from extraction.run.estimate import MIN_TEXT_TOKENS, prompt_fit

    settings = get_settings()
    warnings = []
    for fit in prompt_fit(session, project, settings):
        if fit.fits:
            continue
        needed = f"needs ~{fit.overhead_tokens:,} of the {fit.context_tokens:,}-token context " \
            f"(EXTRACTFLOW_LLM_CONTEXT_TOKENS) before any document text"
        if len(fit.variables) == 1:
            raise ValidationError(
                f"the prompt of variable '{fit.variables[0]}' alone {needed}, leaving less "
                f"than {MIN_TEXT_TOKENS} tokens for the document: every extraction would fail. "
                "Shorten its instructions or categories, or raise the context setting.",
                field=fit.variables[0])
        warnings.append(f"all {len(fit.variables)} variables together {needed}: runs in "
                        "per_document mode would fail; use --mode per_variable")
    return warnings


@app.command("export")
def export(
    project: str,
    output: Annotated[Path | None, typer.Option("--output", "-o",
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
