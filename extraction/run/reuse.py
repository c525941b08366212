"""The re-use rule of a run, in one place: which earlier cells a new run copies, not re-asks.

A cell is re-used when an earlier extraction of the same document *content* (``content_hash``,
so a duplicate kept under another name counts too) exists in the project with the same prompt
version and model, whose status is ``ok`` or ``not_found``, and which is itself an original
(not a copy). The runner (:mod:`extraction.run.runner`) copies those cells; the estimate
before a run (:mod:`extraction.run.forecast`) leaves them out of the calls it counts.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from extraction.models import Document, Extraction, ExtractionStatus

__all__ = ["REUSABLE", "reusable_cells"]

REUSABLE = (ExtractionStatus.OK, ExtractionStatus.NOT_FOUND)


def reusable_cells(
    session: Session,
    *,
    project_id: uuid.UUID,
    content_hashes: Collection[str],
    prompt_ids: Collection[uuid.UUID],
    model: str,
    exclude_job: uuid.UUID | None = None,
) -> dict[tuple[str, uuid.UUID], Extraction]:
    """The newest re-usable cell per (content hash, prompt id).

    Args:
        exclude_job: The job asking (its own cells are not "earlier" ones).
    """
    hashes = sorted({h for h in content_hashes if h})
    if not hashes:
        return {}
    # Same content in this project: found through the (project, content_hash) index, then
    # their cells through the (document, variable) index — never a scan of all extractions.
    same_content = dict(session.execute(
        select(Document.id, Document.content_hash).where(
            Document.project_id == project_id,
            Document.content_hash.in_(hashes),
        )
    ).tuples().all())
    if not same_content:
        return {}
    query = (
        select(Extraction)
        .where(
            Extraction.document_id.in_(list(same_content)),
            Extraction.prompt_id.in_(list(prompt_ids)),
            Extraction.model == model,
            Extraction.status.in_(REUSABLE),
            Extraction.reused_from_id.is_(None),
        )
        .order_by(Extraction.created_at.desc())
    )
    if exclude_job is not None:
        query = query.where(Extraction.job_id != exclude_job)
    found: dict[tuple[str, uuid.UUID], Extraction] = {}
    for extraction in session.scalars(query):
        key = (same_content[extraction.document_id], extraction.prompt_id)
        found.setdefault(key, extraction)  # type: ignore[arg-type]
    return found
