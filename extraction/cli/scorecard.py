"""`extractflow scorecard PROJECT`: did refinement help? Accuracy per prompt version."""

from __future__ import annotations

from typing import Annotated

import typer

from extraction.cli._common import JsonOption, console, db_session, emit_json, table
from extraction.review.corrections import format_value
from extraction.review.scorecard import build_scorecard, scorecard_to_dict

__all__ = ["scorecard"]


def _shown(value: object) -> str:
    return format_value(value) if value is not None else "(not stated)"


def scorecard(
    project: str,
    job: Annotated[str | None, typer.Option(
        "--job", help="The sample run to check cell by cell (default: the latest).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Accuracy per variable and prompt version; the latest sample cell by cell (old → new)."""
    with db_session() as s:
        card = build_scorecard(s, project, job=job)
        data = scorecard_to_dict(card)
    if json_out:
        emit_json(data)
        return
    t = table("variable", "version", "origin", "cells", "reviewed", "checked", "accuracy",
              title=f"Scorecard: {card.project} ({card.reviewed} reviewed cell(s))")
    for v in card.versions:
        accuracy = "–" if v.accuracy is None else f"{v.accuracy:.0%} ({v.correct}/{v.checked})"
        version = f"v{v.version}" if v.version else "?"
        t.add_row(v.variable, version + (" *" if v.is_current else ""), v.origin or "",
                  str(v.cells), str(v.reviewed), str(v.checked), accuracy)
    console.print(t)
    console.print("* current version", style="dim")
    latest = card.latest
    if latest is None:
        console.print("No sample run yet.")
        return
    if not latest.cells:
        console.print(f"Latest sample run {latest.job_id}: no cell was reviewed in an earlier "
                      "run, nothing to compare yet.", markup=False)
        return
    counts = latest.counts()
    summary = ", ".join(f"{n} {o.replace('_', ' ')}" for o, n in counts.items() if n)
    c = table("document", "variable", "prompt", "old → new value", "right value", "outcome",
              title=f"Latest sample run {latest.job_id}: {summary}")
    for cell in latest.cells:
        c.add_row(cell.filename, cell.variable,
                  f"v{cell.old_version or '?'}→v{cell.new_version or '?'}",
                  f"{_shown(cell.old_value)} → {_shown(cell.new_value)}",
                  _shown(cell.right_value), cell.outcome.replace("_", " "))
    console.print(c)
