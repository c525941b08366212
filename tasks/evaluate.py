"""The evaluate task: measure a project's extractions against gold data (thin wrapper)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

__all__ = ["evaluate_gold"]


@task(name="evaluate-gold", cache_policy=NO_CACHE)
def evaluate_gold(project: str, gold: str, *, job_id: str | None = None,
                  variable: str | None = None, out: str | None = None,
                  strict: bool = False) -> dict[str, Any]:
    """Evaluate and write the report; returns the evaluation as a dict plus its Markdown."""
    # Imported here, as in tasks/export.py: DuckDB (read through the export query layer)
    # referenced from a task's globals makes a process that ran the flow print "nanobind:
    # leaked …" at exit.
    from pathlib import Path

    from extraction.db import session_scope
    from extraction.evaluate import evaluate_project, render, write_report

    with session_scope() as session:
        evaluation = evaluate_project(session, project, gold, job=job_id, variable=variable,
                                      strict=strict)
    files = write_report(evaluation, Path(out)) if out else []
    return {**evaluation.to_dict(), "files": [str(p) for p in files],
            "markdown": render(evaluation)}
