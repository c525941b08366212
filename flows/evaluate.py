"""The ``evaluate`` flow: a project's extractions against gold data, the report as an artifact."""

from __future__ import annotations

import re
from typing import Any

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact
from prefect.context import SyncClientContext

from tasks.evaluate import evaluate_gold

__all__ = ["evaluate"]


def _artifact_key(project: str) -> str:
    # Artifact keys allow lowercase letters, digits and dashes only.
    return "evaluation-" + (re.sub(r"[^a-z0-9]+", "-", project.lower()).strip("-") or "project")


@flow(name="evaluate")
async def evaluate(
    project: str,
    gold: str = "feedback",
    job_id: str | None = None,
    variable: str | None = None,
    out: str | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Evaluate a project's extractions against gold data; the methods appendix as an artifact.

    Args:
        project: Project name or id.
        gold: A gold file (.csv or .xlsx, wide or long) as the machine running the flow sees
            it, or "feedback" for the reviewed cells.
        job_id: Evaluate this job. Default: for each document × variable, the value of the
            newest COMPLETE job that has one (what an export gives).
        variable: Only this variable.
        out: Also write the report here (.md with a PNG beside it, or one .html file).
        strict: Fail on the first problem in the gold instead of skipping the cell.

    Async like ``export-dataset``: a sync flow run ends by waiting up to a second for its
    heartbeat thread. Callers outside an event loop: ``asyncio.run(evaluate(…))``.
    """
    with SyncClientContext.get_or_create():  # the sync task reuses the flow's API client
        result = evaluate_gold(project, gold, job_id=job_id, variable=variable, out=out,
                               strict=strict)
    overall = result["overall"]["accuracy"]["value"]
    await acreate_markdown_artifact(
        key=_artifact_key(result["project"]),
        markdown=result.pop("markdown"),
        description=f"{result['cells']} cells in {result['documents']} documents; accuracy "
                    + ("–" if overall is None else f"{overall:.1%}"),
    )
    return result
