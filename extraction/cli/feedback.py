"""`extractflow feedback …`: say whether an extracted value is right, and what it should be."""

from __future__ import annotations

from typing import Annotated

import typer

from extraction.cli._common import (
    JsonOption,
    console,
    db_session,
    emit_json,
    literal,
    new_app,
    table,
)
from extraction.db import full_id
from extraction.errors import ValidationError
from extraction.models import Extraction
from extraction.review import feedback as feedback_service
from extraction.review.corrections import format_value

app = new_app("Feedback: verdicts on extracted values, used by refinement and the scorecard.")


def _shown(value: object) -> str:
    return format_value(value) if value is not None else "(not stated)"


@app.command("add")
def add(
    extraction: Annotated[str, typer.Argument(help="The extraction id or its first 8 characters (see `job results`).")],
    correct: Annotated[bool, typer.Option("--correct", help="The extracted value is right.")]
    = False,
    value: Annotated[str | None, typer.Option(
        "--value", help="The value is wrong; this is the right one (checked against the "
        "variable's type and categories; several categories: separate with ';').")] = None,
    not_stated: Annotated[bool, typer.Option(
        "--not-stated", help="The value is wrong: the document does not state it.")] = False,
    comment: Annotated[str, typer.Option("--comment", "-c",
                       help="Why; refinement reads it.")] = "",
    json_out: JsonOption = False,
) -> None:
    """Record a verdict on one extraction (recording again updates it)."""
    chosen = [name for name, on in (("--correct", correct), ("--value", value is not None),
                                    ("--not-stated", not_stated)) if on]
    if len(chosen) != 1:
        raise ValidationError(
            "give exactly one of --correct, --value V or --not-stated"
            + (f" (got {' and '.join(chosen)})" if chosen else ""),
            field="--value",
        )
    with db_session() as s:
        extraction = str(full_id(s, Extraction, extraction, what="an extraction"))
        outcome = feedback_service.record_feedback(
            s, extraction, is_correct=correct, corrected_value=value, comment=comment,
            source="cli")
        view = feedback_service.feedback_view(outcome.feedback)
        data = {**feedback_service.feedback_to_dict(view), "action": outcome.action}
    if json_out:
        emit_json(data)
        return
    where = f"{view.filename} · {view.variable} (prompt v{view.prompt_version or '?'})"
    if view.is_correct:
        said = f"{_shown(view.extracted_value)} is correct"
    else:
        said = f"{_shown(view.extracted_value)} is wrong → {_shown(view.corrected_value)}"
    verb = {"created": "Recorded", "updated": "Updated", "unchanged": "Already recorded"}
    console.print(f"{verb[outcome.action]}: ", end="")
    console.print(literal(f"{where}: {said}"), markup=False, highlight=False)


@app.command("list")
def list_(
    project: str,
    job: Annotated[str | None, typer.Option("--job", help="Only this job's extractions.")]
    = None,
    variable: Annotated[str | None, typer.Option("--variable", help="Only this variable.")]
    = None,
    history: Annotated[bool, typer.Option(
        "--history", help="Also the older verdicts a newer one replaced.")] = False,
    json_out: JsonOption = False,
) -> None:
    """List the current verdict of each reviewed extraction, oldest first."""
    with db_session() as s:
        views = feedback_service.list_feedback(s, project, job=job, variable=variable,
                                               effective_only=not history)
        rows = [feedback_service.feedback_to_dict(v) for v in views]
    if json_out:
        emit_json(rows)
        return
    if not rows:
        console.print("No feedback yet.")
        return
    t = table("document", "variable", "prompt", "extracted", "verdict", "comment")
    for v in views:
        verdict = "correct" if v.is_correct else f"wrong → {_shown(v.corrected_value)}"
        t.add_row(v.filename, v.variable, f"v{v.prompt_version}" if v.prompt_version else "?",
                  _shown(v.extracted_value), verdict, v.comment)
    console.print(t)
    wrong = sum(not v.is_correct for v in views)
    console.print(f"{len(views)} verdict(s): {len(views) - wrong} correct, {wrong} wrong")
