"""What reviewers established per document × variable: the values the scorecard scores against.

A cell may have been judged on several runs and by several sources; the truth of a cell is the
newest effective verdict on it, whichever run it was given on, so a later run is scored against
everything reviewers have said so far.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from extraction.review.feedback import FeedbackView

__all__ = ["Truth", "truths_by_cell"]


@dataclass(frozen=True)
class Truth:
    """What a reviewer established about one document × variable."""

    document_id: uuid.UUID
    variable_id: uuid.UUID
    value: Any
    verdict: Literal["confirmed", "corrected"]
    feedback: FeedbackView


def truths_by_cell(
    views: list[FeedbackView], *, exclude_jobs: set[uuid.UUID] | None = None
) -> dict[tuple[uuid.UUID, uuid.UUID], Truth]:
    """The right value per (document, variable) from effective feedback, newest verdict wins.

    Args:
        views: effective feedback (see :func:`effective_feedback`).
        exclude_jobs: ignore verdicts on extractions of these jobs (e.g. the run being judged).
    """
    truths: dict[tuple[uuid.UUID, uuid.UUID], Truth] = {}
    for view in sorted(views, key=lambda v: (v.updated_at, v.created_at)):
        if exclude_jobs and view.job_id in exclude_jobs:
            continue
        truths[(view.document_id, view.variable_id)] = Truth(
            document_id=view.document_id, variable_id=view.variable_id, value=view.right_value,
            verdict="confirmed" if view.is_correct else "corrected", feedback=view,
        )
    return truths
