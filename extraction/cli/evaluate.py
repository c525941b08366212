"""`extractflow evaluate PROJECT --gold FILE|feedback` and `extractflow compare JOB_A JOB_B`.

Both run right here (one read of the database, no Prefect start-up); the ``evaluate`` flow
does the same work when a report should show in the Prefect UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from extraction.cli._common import JsonOption, console, db_session, emit_json, err_console, table

__all__ = ["compare_command", "evaluate_command"]

#: Gold problems printed before "… and N more" (``--json`` and the report list them all).
SHOWN_PROBLEMS = 20


def _ci(stat: dict[str, Any]) -> str:
    if stat["value"] is None:
        return "–"
    if stat["low"] is None:
        return f"{stat['value']:.2f}"
    return f"{stat['value']:.2f} ({stat['low']:.2f}–{stat['high']:.2f})"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _table(title: str, *columns: str, names: list[str]) -> Any:
    """A compact table that fits 80 columns: nothing wraps (the report has every digit)."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False,
              padding=(0, 0), show_edge=False)
    width = max([len(columns[0]), *(len(n) for n in names)])
    t.add_column(columns[0], no_wrap=True, min_width=width)
    for column in columns[1:]:
        t.add_column(column, no_wrap=True, justify="right")
    return t


def _print_evaluation(data: dict[str, Any]) -> None:
    problems = data["gold"]["problems"]
    for problem in problems[:SHOWN_PROBLEMS]:
        where = ", ".join(p for p in (f"row {problem['row']}" if problem["row"] else "",
                                      f"column '{problem['column']}'" if problem["column"]
                                      else "") if p)
        err_console.print(f"warning: gold {where}: {problem['message']}", markup=False,
                          highlight=False)
    if len(problems) > SHOWN_PROBLEMS:
        err_console.print(f"warning: … and {len(problems) - SHOWN_PROBLEMS} more gold "
                          "problem(s) (--json lists them all)", markup=False)
    t = _table(f"{data['project']}: {data['cells']} cells in {data['documents']} documents "
               f"against {Path(data['gold']['source']).name}",
               "variable", "n", "accuracy (95% CI)", "P", "R", "F1", "W", "O", "H", "κ", "α",
               names=[v["variable"] for v in data["variables"]])
    for v in data["variables"]:
        t.add_row(v["variable"], str(v["cells"]), _ci(v["accuracy"]),
                  _num(v["precision"]["value"]), _num(v["recall"]["value"]),
                  _num(v["f1"]["value"]), str(v["wrong"]), str(v["omission"]),
                  str(v["hallucination"]), _num(v["kappa"]["value"]),
                  _num(v["alpha"]["value"]))
    o = data["overall"]
    t.add_row("all", str(o["cells"]), _ci(o["accuracy"]), _num(o["precision"]["value"]),
              _num(o["recall"]["value"]), _num(o["f1"]["value"]), str(o["wrong"]),
              str(o["omission"]), str(o["hallucination"]), "", "")
    console.print(t)
    console.print("n cells scored · P/R/F1: a value is the positive class · W wrong, "
                  "O omitted, H hallucinated", markup=False, highlight=False)
    cal = data["calibration"]
    console.print(f"Confidence: AUROC {_num(cal['auroc'])}, ECE {_num(cal['ece'])} over "
                  f"{cal['cells']} cells. Reviewing the least confident "
                  + ", ".join(f"{r['share']:.0%} → {r['accuracy_after']:.1%}"
                              for r in data["review_budget"] if r["accuracy_after"] is not None)
                  + (f" (accuracy now {data['review_budget'][0]['accuracy_before']:.1%})"
                     if data["review_budget"] and data["review_budget"][0]["accuracy_before"]
                     is not None else ""),
                  markup=False, highlight=False)
    for path in data.get("files", []):
        console.print(f"Wrote {path}", markup=False, highlight=False)


def evaluate_command(
    project: Annotated[str, typer.Argument(help="Project name or id.")],
    gold: Annotated[str, typer.Option(
        "--gold", help="Gold file (.csv or .xlsx, wide or long), or 'feedback' for the "
                       "reviewed cells.")],
    job: Annotated[str | None, typer.Option(
        "--job", help="Evaluate this job (default: per cell, the newest COMPLETE job's "
                      "value, as exports choose).")] = None,
    variable: Annotated[str | None, typer.Option(
        "--variable", help="Only this variable.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the methods appendix: report.md or report.html (with a "
                            "reliability diagram PNG).")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Stop on the first problem in the gold (default: skip and warn).")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Evaluate extractions against gold data: accuracy, P/R/F1, κ, α, CIs, calibration."""
    from extraction.evaluate import evaluate_project, write_report

    with db_session() as s:
        evaluation = evaluate_project(s, project, gold, job=job, variable=variable,
                                      strict=strict)
    written = write_report(evaluation, out) if out is not None else []
    data = {**evaluation.to_dict(), "files": [str(p) for p in written]}
    if json_out:
        emit_json(data)
        return
    _print_evaluation(data)


def compare_command(
    job_a: Annotated[str, typer.Argument(help="A job id (or id prefix).")],
    job_b: Annotated[str, typer.Argument(help="Another job of the same project.")],
    top: Annotated[int, typer.Option("--top", help="Differing cells to list.")] = 20,
    json_out: JsonOption = False,
) -> None:
    """Agreement between two runs: per variable, κ/α, and the cells that differ."""
    from config.settings import get_settings
    from extraction.evaluate import MatchRules, compare_jobs

    with db_session() as s:
        comparison = compare_jobs(s, job_a, job_b, top=top,
                                  rules=MatchRules.from_settings(get_settings()))
    data = comparison.to_dict()
    if json_out:
        emit_json(data)
        return
    t = _table(f"{data['project']}: job {data['job_a'][:8]} vs {data['job_b'][:8]}",
               "variable", "type", "cells", "agree", "agreement", "κ", "α",
               names=[v["variable"] for v in data["variables"]])
    for v in data["variables"]:
        t.add_row(v["variable"], v["type"], str(v["cells"]), str(v["agree"]),
                  "–" if v["agreement"] is None else f"{v['agreement']:.1%}",
                  _num(v["kappa"]), _num(v["alpha"]))
    t.add_row("all", "", str(data["cells"]), str(data["agree"]),
              "–" if data["agreement"] is None else f"{data['agreement']:.1%}", "", "")
    console.print(t)
    if not data["differences"]:
        console.print("No cell differs.")
        return
    d = table("document", "variable", "job A", "job B", "confidence A / B",
              title=f"{len(data['differences'])} of {data['differences_total']} differing "
                    "cells, most confident first")
    for diff in data["differences"]:
        d.add_row(diff["filename"], diff["variable"], _show(diff["value_a"]),
                  _show(diff["value_b"]),
                  f"{_num(diff['confidence_a'])} / {_num(diff['confidence_b'])}")
    console.print(d)


def _show(value: Any) -> str:
    from extraction.review.corrections import format_value

    return format_value(value) or "(not stated)"
