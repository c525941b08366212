"""The aggregate task: job totals and per-variable figures, the final status, the summary
artifact."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

from extraction.db import session_scope
from extraction.run import views
from extraction.run.summary import Outcome, finalize_job, summary_markdown
from tasks.refine import sample_scorecard

__all__ = ["aggregate"]


def _finalize(job_id: uuid.UUID, outcome: Outcome, reason: str | None) -> tuple[dict, str]:
    with session_scope() as session:
        job = finalize_job(session, job_id, outcome, reason=reason)
        return views.job_to_dict(job, project_name=job.project.name), summary_markdown(job)


@task(name="aggregate", cache_policy=NO_CACHE)
async def aggregate(job_id: uuid.UUID, outcome: Outcome, reason: str | None = None
                    ) -> dict[str, Any]:
    """Sum up the job, set its final status and publish the summary table."""
    data, markdown = await asyncio.to_thread(_finalize, job_id, outcome, reason)
    await acreate_markdown_artifact(
        markdown, key=f"job-{str(job_id)[:8]}-summary",
        description=f"Summary of job {job_id}",
    )
    scorecard = await asyncio.to_thread(sample_scorecard, job_id)
    if scorecard:  # a sample run of a project with feedback: did refinement help?
        await acreate_markdown_artifact(scorecard, key=f"job-{str(job_id)[:8]}-scorecard",
                                        description=f"Scorecard after sample job {job_id}")
    return data
