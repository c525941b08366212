"""`extractflow prompt refine PROJECT`: corrections become new prompt versions.

Registered on the `prompt` group (see ``extraction/cli/__init__.py``). It calls the domain
directly rather than the ``refine-prompts`` flow, so it needs no Prefect API and answers in the
time the LLM takes; the flow (and its deployment) is the way to run it from the Prefect UI.
"""

from __future__ import annotations

from typing import Annotated

import typer

from config.settings import get_settings
from extraction.cli._common import JsonOption, console, db_session, emit_json
from extraction.review.refine import llm_ask, refine_prompts, report_to_dict

__all__ = ["refine"]


def _print_diff(text: str) -> None:
    for line in text.splitlines():
        style = ("bold" if line.startswith(("---", "+++")) else "green" if line.startswith("+")
                 else "red" if line.startswith("-") else "cyan" if line.startswith("@@") else None)
        console.print(line, style=style, markup=False, highlight=False)


def refine(
    project: str,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Show the proposed new versions as diffs; store nothing.")] = False,
    variable: Annotated[list[str] | None, typer.Option(
        "--variable", help="Only this variable (repeat for several).")] = None,
    job: Annotated[str | None, typer.Option(
        "--job", help="Learn only from corrections on this job's extractions.")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="The LLM that rewrites the prompts (default: the project's model, "
        "else EXTRACTFLOW_LLM_MODEL).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Store a rewrite even when it scores worse than the current prompt on "
        "the held-out documents.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Rewrite, with the LLM, the prompt of each variable that has new corrections.

    A third of the reviewed documents is held out: their corrections are not shown to the
    LLM, and a rewrite is stored only if it scores at least as well on them as the current
    prompt (both scores are printed). Exit code 1 when the rewrite of some variable failed or
    was refused (the others are stored).
    """
    settings = get_settings()
    with db_session() as s:
        report = refine_prompts(s, project, llm_ask(settings, model=model), job=job,
                                variables=variable or None, dry_run=dry_run, settings=settings,
                                force=force)
        data = report_to_dict(report)
    if json_out:
        emit_json(data)
        if report.failed:
            raise typer.Exit(1)
        return
    if report.held_out_documents:
        console.print(f"Held out to check the rewrites (not learned from): "
                      f"{', '.join(report.held_out_documents)}", markup=False, highlight=False)
    if not report.results:
        console.print("No variable has new corrections: nothing to refine.")
    for r in report.results:
        if r.error:
            console.print(f"[bold]{r.variable}[/]: [red]not refined[/] — ", end="")
            console.print(r.error, markup=False, highlight=False)
            continue
        verb = "would become" if dry_run else "is now"
        console.print(f"[bold]{r.variable}[/]: v{r.from_version} {verb} v{r.to_version} "
                      f"(refined from {r.corrections} correction(s); {r.examples_shown} of "
                      f"{r.examples_total} worked example(s) shown)")
        console.print(f"  {r.rationale}", markup=False, highlight=False)
        if r.held_out is not None:
            console.print(f"  {r.held_out.describe()}"
                          + (" (kept with --force)" if r.forced else ""),
                          markup=False, highlight=False)
        if dry_run:
            _print_diff(r.diff)
    if report.skipped:
        console.print(f"Left as they are (no new corrections): {', '.join(report.skipped)}",
                      markup=False)
    if dry_run and report.refined:
        console.print("Nothing was stored (dry run). Run without --dry-run to store these.")
    if report.failed:  # the others were stored; say so through the exit code too
        raise typer.Exit(1)
