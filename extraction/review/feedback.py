"""Reviewers' verdicts on extractions: recording them and reading them back.

Feedback is what refinement learns from and what the scorecard measures against. A corrected
value is checked and normalised against the variable before it is stored (see
:mod:`extraction.review.corrections`), so feedback holds values in the same form as extractions.

Rules worth knowing:

* **One verdict per extraction per source.** Recording feedback again from the same source
  (``cli``, ``workbook``, …) updates the existing row instead of adding one, so importing the
  same review workbook twice changes nothing. Different sources may disagree; the most recently
  updated verdict is the *effective* one (see :func:`effective_feedback`).
* **"Not stated" is a value.** A verdict of *wrong* with no corrected value means "the document
  does not state this variable": the right answer is null. A corrected value equal to the
  extracted one is refused (that verdict is *correct*).
* **Feedback stays with the prompt version it judged**: it is attached to the extraction, and
  the extraction records its prompt version, so a later refinement never re-labels old verdicts.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from extraction import codebook
from extraction.errors import NotFoundError, ValidationError
from extraction.models import (
    Document,
    Extraction,
    ExtractionFeedback,
    ExtractionStatus,
    ProcessingJob,
    Project,
    Prompt,
    Variable,
    VariableType,
    utcnow,
)
from extraction.review.corrections import format_value, normalise_value, same_value
from extraction.run import jobs

__all__ = [
    "FeedbackView",
    "RecordOutcome",
    "as_utc",
    "check_feedback",
    "effective_feedback",
    "feedback_to_dict",
    "feedback_view",
    "get_extraction",
    "get_job",
    "list_feedback",
    "record_feedback",
    "store_checked",
]

#: Longest ``source`` label kept (the column is ``String(32)``): longer ones are cut, not refused.
MAX_SOURCE_LENGTH = 32


# --------------------------------------------------------------------------- lookups


def _as_uuid(ref: str | uuid.UUID, what: str) -> uuid.UUID:
    if isinstance(ref, uuid.UUID):
        return ref
    try:
        return uuid.UUID(str(ref).strip())
    except ValueError:
        raise NotFoundError(
            f"no {what} with id '{ref}' (ids are UUIDs such as "
            "'0b8c5f0e-3f1e-4b1a-9c57-2f4a4c5d9e10')",
            instance=str(ref),
        ) from None


def get_extraction(session: Session, ref: str | uuid.UUID | Extraction) -> Extraction:
    """An extraction by id; :class:`NotFoundError` names the id when there is none."""
    if isinstance(ref, Extraction):
        return ref
    extraction = session.get(Extraction, _as_uuid(ref, "extraction"))
    if extraction is None:
        raise NotFoundError(f"no extraction with id '{ref}'", instance=str(ref))
    return extraction


def get_job(
    session: Session, ref: str | uuid.UUID | ProcessingJob, *, project: Project | None = None
) -> ProcessingJob:
    """A job by id or id prefix (see :func:`extraction.run.jobs.get_job`), optionally required to
    belong to ``project``."""
    job = ref if isinstance(ref, ProcessingJob) else jobs.get_job(session, ref)
    if project is not None and job.project_id != project.id:
        raise NotFoundError(f"no job with id '{ref}' in project '{project.name}'",
                            field="job", instance=str(ref))
    return job


# --------------------------------------------------------------------------- recording

RecordAction = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class RecordOutcome:
    """What :func:`record_feedback` did: the row, and whether it was new, changed or not."""

    feedback: ExtractionFeedback
    action: RecordAction


def check_feedback(row: Extraction, *, is_correct: bool, corrected_value: Any = None) -> Any:
    """Validate a verdict on ``row`` without storing it; returns the corrected value to store.

    Raises:
        ValidationError: see :func:`record_feedback`.
    """
    variable = row.variable
    if is_correct:
        given = corrected_value is not None and not (
            isinstance(corrected_value, str) and not corrected_value.strip())
        if given and not same_value(variable, normalise_value(variable, corrected_value),
                                    row.value):
            raise ValidationError(
                "a value marked correct takes no corrected value; mark it wrong to correct it",
                field="corrected_value", instance=str(row.id),
            )
        if row.status is ExtractionStatus.FAILED:
            raise ValidationError(
                "this extraction failed and has no answer to confirm; give the right value "
                "(or mark it not stated) instead",
                field="is_correct", instance=str(row.id),
            )
        return None
    value = normalise_value(variable, corrected_value)
    if row.status is not ExtractionStatus.FAILED and same_value(variable, value, row.value):
        shown = format_value(value) or "not stated"
        raise ValidationError(
            f"the corrected value ({shown}) is what was extracted; mark it correct instead",
            field="corrected_value", instance=str(row.id),
        )
    return value


def record_feedback(
    session: Session,
    extraction: str | uuid.UUID | Extraction,
    *,
    is_correct: bool,
    corrected_value: Any = None,
    comment: str = "",
    source: str = "cli",
) -> RecordOutcome:
    """Record (or update) one reviewer verdict on an extraction.

    Args:
        session: an open session; the caller commits.
        extraction: the extraction (id or row).
        is_correct: the extracted value is right.
        corrected_value: for a wrong value, the right one (checked and normalised against the
            variable); ``None`` means "not stated in the document".
        comment: why the value is wrong, or anything refinement should know.
        source: who said it (``cli``, ``workbook``, ``api``…); one verdict per source.

    Returns:
        The stored row and whether it was created, updated or already said exactly this.

    Raises:
        NotFoundError: no such extraction.
        ValidationError: a correction on a value marked correct, a corrected value that does
            not fit the variable, or one equal to the extracted value.
    """
    row = get_extraction(session, extraction)
    value = check_feedback(row, is_correct=is_correct, corrected_value=corrected_value)
    return store_checked(session, [(row, is_correct, value, comment)], source=source)[0]


_ID_BATCH = 1000


def store_checked(
    session: Session,
    verdicts: Sequence[tuple[Extraction, bool, Any, str]],
    *,
    source: str = "cli",
) -> list[RecordOutcome]:
    """Store verdicts already passed through :func:`check_feedback`, in one flush.

    Each item is ``(extraction, is_correct, checked corrected value, comment)``. The
    one-verdict-per-extraction-and-source rule is applied here, with the existing rows looked
    up in batches, so a workbook of thousands of rows costs a few queries, not one per row.
    """
    source = (source or "cli").strip()[:MAX_SOURCE_LENGTH]
    # --- one current verdict per cell (issue 22, item 10) --------------------------------
    # The current verdict of an extraction is its newest, whatever its source; older ones
    # are its history. A verdict equal to the current one (a re-import of a workbook that
    # shows a verdict given with `feedback add`) is "unchanged", not a second row; one that
    # differs replaces this source's own row, or else is added over another source's
    # verdict, which is kept as history and reported as "updated", not "created".
    ids = [row.id for row, *_ in verdicts]
    mine: dict[uuid.UUID, ExtractionFeedback] = {}
    current: dict[uuid.UUID, ExtractionFeedback] = {}
    for start in range(0, len(ids), _ID_BATCH):
        for fb in session.scalars(select(ExtractionFeedback).where(
                ExtractionFeedback.extraction_id.in_(ids[start:start + _ID_BATCH]))):
            if fb.source == source:
                mine[fb.extraction_id] = fb
            known = current.get(fb.extraction_id)
            if known is None or _recency(fb) >= _recency(known):
                current[fb.extraction_id] = fb
    outcomes = []
    for row, is_correct, value, comment in verdicts:
        comment = (comment or "").strip()
        now = current.get(row.id)
        found = mine.get(row.id)
        if now is not None and (now.is_correct, now.corrected_value) == (is_correct, value) \
                and comment in ("", now.comment):
            outcomes.append(RecordOutcome(now, "unchanged"))
        elif found is not None:
            found.is_correct, found.corrected_value, found.comment = is_correct, value, comment
            found.updated_at = utcnow()  # the newest statement is the current one
            current[row.id] = found
            outcomes.append(RecordOutcome(found, "updated"))
        else:
            found = ExtractionFeedback(extraction_id=row.id, is_correct=is_correct,
                                       corrected_value=value, comment=comment, source=source)
            session.add(found)
            mine[row.id] = current[row.id] = found
            outcomes.append(RecordOutcome(found, "created" if now is None else "updated"))
    # --- end of item 10 -------------------------------------------------------------------
    session.flush()
    return outcomes


# --------------------------------------------------------------------------- reading

def store_new_verdicts(
    session: Session,
    current: Mapping[uuid.UUID, FeedbackView],
    verdicts: Sequence[tuple[Extraction, bool, Any, str]],
    *,
    source: str,
    report: Any,
) -> None:
    """Store checked verdicts from an import, skipping those that repeat the current one.

    ``verdicts`` are ``(extraction, is_correct, checked value, comment)``; ``current`` is
    :func:`effective_feedback` of the project. A verdict equal to the cell's current verdict
    (same judgement, comment and, for a wrong value, the same corrected value by the type's
    rules) counts as ``unchanged``; the rest go through :func:`store_checked`. ``report``'s
    ``unchanged``, ``created``, ``updated`` and ``feedback_ids`` are counted up, so the
    workbook and the page's verdict files report the same way.
    """
    to_store = []
    for extraction, is_correct, value, comment in verdicts:
        verdict = current.get(extraction.id)
        if verdict is not None and verdict.is_correct == is_correct \
                and verdict.comment == comment \
                and (is_correct or same_value(extraction.variable,
                                              verdict.corrected_value, value)):
            report.unchanged += 1
            continue
        to_store.append((extraction, is_correct, value, comment))
    for outcome in store_checked(session, to_store, source=source):
        setattr(report, outcome.action, getattr(report, outcome.action) + 1)
        report.feedback_ids.append(outcome.feedback.id)



@dataclass(frozen=True)
class FeedbackView:
    """One verdict with the context a reviewer reads it in."""

    id: uuid.UUID
    extraction_id: uuid.UUID
    job_id: uuid.UUID
    document_id: uuid.UUID
    filename: str
    variable_id: uuid.UUID
    variable: str
    variable_type: VariableType
    prompt_id: uuid.UUID | None
    prompt_version: int | None
    extracted_value: Any
    is_correct: bool
    corrected_value: Any
    comment: str
    source: str
    created_at: datetime
    updated_at: datetime

    @property
    def right_value(self) -> Any:
        """What the value should be: the extracted one if confirmed, else the correction."""
        return self.extracted_value if self.is_correct else self.corrected_value


def as_utc(moment: datetime | None) -> datetime | None:
    """``moment`` as an aware UTC datetime: SQLite returns naive ones, PostgreSQL aware ones,
    and rows created in the current session still hold what Python gave them."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _query(project: Project):  # type: ignore[no-untyped-def]
    return (
        select(ExtractionFeedback, Extraction, Document.filename, Variable, Prompt.version)
        .join(Extraction, Extraction.id == ExtractionFeedback.extraction_id)
        .join(ProcessingJob, ProcessingJob.id == Extraction.job_id)
        .join(Document, Document.id == Extraction.document_id)
        .join(Variable, Variable.id == Extraction.variable_id)
        .outerjoin(Prompt, Prompt.id == Extraction.prompt_id)
        .where(ProcessingJob.project_id == project.id)
    )


def list_feedback(
    session: Session,
    project: str | uuid.UUID | Project,
    *,
    job: str | uuid.UUID | ProcessingJob | None = None,
    variable: str | uuid.UUID | Variable | None = None,
    effective_only: bool = False,
) -> list[FeedbackView]:
    """Feedback of a project, optionally of one job and/or one variable, oldest first.

    Args:
        effective_only: keep only the newest verdict per extraction (what refinement and
            the scorecard use) instead of one per source.
    """
    proj = project if isinstance(project, Project) else codebook.get_project(session, project)
    query = _query(proj)
    if job is not None:
        query = query.where(Extraction.job_id == get_job(session, job, project=proj).id)
    if variable is not None:
        var = variable if isinstance(variable, Variable) else _variable_any(session, proj, variable)
        query = query.where(Extraction.variable_id == var.id)
    query = query.order_by(ExtractionFeedback.created_at, ExtractionFeedback.id)
    views = [_view(fb, ex, filename, var, version)
             for fb, ex, filename, var, version in session.execute(query)]
    return _newest_per_extraction(views) if effective_only else views


def _view(fb: ExtractionFeedback, ex: Extraction, filename: str, var: Variable,
          version: int | None) -> FeedbackView:
    return FeedbackView(
        id=fb.id, extraction_id=ex.id, job_id=ex.job_id, document_id=ex.document_id,
        filename=filename, variable_id=var.id, variable=var.name, variable_type=var.type,
        prompt_id=ex.prompt_id, prompt_version=version, extracted_value=ex.value,
        is_correct=fb.is_correct, corrected_value=fb.corrected_value, comment=fb.comment,
        source=fb.source, created_at=as_utc(fb.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(fb.updated_at) or as_utc(fb.created_at),  # type: ignore[arg-type]
    )


def feedback_view(feedback: ExtractionFeedback) -> FeedbackView:
    """The :class:`FeedbackView` of one stored verdict (e.g. the one just recorded)."""
    ex = feedback.extraction
    return _view(feedback, ex, ex.document.filename, ex.variable,
                 ex.prompt.version if ex.prompt is not None else None)


def _variable_any(session: Session, project: Project, ref: str | uuid.UUID) -> Variable:
    """A variable by name or id, including deleted ones (their feedback is still history)."""
    try:
        return codebook.get_variable(session, project, ref)
    except NotFoundError:
        found = session.scalar(
            select(Variable).where(Variable.project_id == project.id, Variable.name == str(ref))
            .order_by(Variable.created_at.desc())
        )
        if found is None:
            raise
        return found


def _recency(fb: ExtractionFeedback) -> tuple[datetime, datetime]:
    """When a verdict was last stated (the newest is the current one)."""
    created = as_utc(fb.created_at) or datetime.min.replace(tzinfo=UTC)
    return (as_utc(fb.updated_at) or created, created)


def _newest_per_extraction(views: list[FeedbackView]) -> list[FeedbackView]:
    newest: dict[uuid.UUID, FeedbackView] = {}
    for view in views:
        current = newest.get(view.extraction_id)
        if current is None or (view.updated_at, view.created_at) >= (
                current.updated_at, current.created_at):
            newest[view.extraction_id] = view
    return sorted(newest.values(), key=lambda v: (v.created_at, str(v.id)))


def effective_feedback(
    session: Session, project: str | uuid.UUID | Project, **filters: Any
) -> dict[uuid.UUID, FeedbackView]:
    """The verdict that counts for each reviewed extraction (newest across sources)."""
    views = list_feedback(session, project, effective_only=True, **filters)
    return {v.extraction_id: v for v in views}


def feedback_to_dict(view: FeedbackView) -> dict[str, Any]:
    """A JSON-ready view of one verdict (what ``feedback list --json`` prints)."""
    return {
        "id": str(view.id),
        "extraction_id": str(view.extraction_id),
        "job_id": str(view.job_id),
        "document_id": str(view.document_id),
        "filename": view.filename,
        "variable": view.variable,
        "type": view.variable_type.value,
        "prompt_version": view.prompt_version,
        "extracted_value": view.extracted_value,
        "is_correct": view.is_correct,
        "corrected_value": view.corrected_value,
        "comment": view.comment,
        "source": view.source,
        "created_at": view.created_at.isoformat() if view.created_at else None,
        "updated_at": view.updated_at.isoformat() if view.updated_at else None,
    }
