"""Refinement and scorecard tasks: thin wrappers over extraction.review.refine and .scorecard."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from config.settings import get_settings
from extraction.db import session_scope
from extraction.review.refine import llm_ask, refine_prompts, report_markdown, report_to_dict
from extraction.review.scorecard import sample_scorecard_markdown

__all__ = ["refine", "sample_scorecard"]

logger = logging.getLogger(__name__)


@task(name="refine-prompts", cache_policy=NO_CACHE)
def refine(
    project: str,
    job: str | None = None,
    variables: list[str] | None = None,
    dry_run: bool = False,
    model: str | None = None,
) -> tuple[dict[str, Any], str]:
    """Rewrite the prompts of variables with new corrections; returns the report and Markdown."""
    settings = get_settings()
    with session_scope() as session:
        report = refine_prompts(session, project, llm_ask(settings, model=model), job=job,
                                variables=variables, dry_run=dry_run, settings=settings)
        return report_to_dict(report), report_markdown(report)


def sample_scorecard(job_id: uuid.UUID | str) -> str | None:
    """The scorecard Markdown for a finished sample run with feedback, else None.

    A plain function (the aggregate task calls it): a scorecard that cannot be built is
    logged and skipped, never a reason for the run to fail.
    """
    try:
        with session_scope() as session:
            return sample_scorecard_markdown(session, job_id)
    except Exception as exc:  # noqa: BLE001 - the run's outcome is already recorded
        logger.warning("no scorecard for job %s: %s", job_id, exc)
        return None
