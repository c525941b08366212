"""Did a refinement help? Accuracy per variable and prompt version, measured against feedback.

Feedback establishes the right value of a reviewed cell (document × variable): the extracted
value when a reviewer confirmed it, the corrected value otherwise (null for "not stated"). The
newest verdict on a cell wins. Against those right values the scorecard reports:

* **per variable and prompt version** — ``cells``: documents extracted with that version;
  ``reviewed``: of those, cells a reviewer judged directly; ``checked``: cells whose right value
  is known, either from their own verdict or from a verdict on the same document given for
  another version; ``correct``: checked cells that match it; ``accuracy`` = correct / checked.
  A version's own verdict wins over the comparison; failed cells (no answer) are not scored.
  So a refined version that nobody reviewed yet is still scored on the documents reviewed
  under its parent — that is how the scorecard shows an improvement.
* **the latest sample run** — each cell of that job whose document and variable were judged
  in *another* job, with the old value, the right value and the new value: ``fixed`` (was
  corrected, now right), ``still_wrong``, ``kept`` (was confirmed, still right), ``broken``
  (was confirmed, now different), or ``failed`` (no answer this time).

Only verdicts and rows in the database are used: the scorecard can be rebuilt at any time.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from extraction import codebook
from extraction.models import (
    Document,
    Extraction,
    ExtractionFeedback,
    ExtractionStatus,
    JobKind,
    JobStatus,
    ProcessingJob,
    Project,
    Prompt,
    Variable,
)
from extraction.review.corrections import format_value, same_value
from extraction.review.feedback import FeedbackView, as_utc, effective_feedback, get_job
from extraction.review.truths import Truth, truths_by_cell

__all__ = [
    "CellOutcome",
    "Outcome",
    "SampleCheck",
    "Scorecard",
    "VersionScore",
    "build_scorecard",
    "sample_scorecard_markdown",
    "scorecard_markdown",
    "scorecard_to_dict",
]

Outcome = Literal["fixed", "still_wrong", "kept", "broken", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("fixed", "still_wrong", "kept", "broken", "failed")


@dataclass
class VersionScore:
    """How one prompt version of one variable did against feedback."""

    variable: str
    variable_id: uuid.UUID
    prompt_id: uuid.UUID | None
    version: int | None
    origin: str | None
    is_current: bool
    cells: int = 0
    reviewed: int = 0
    checked: int = 0
    correct: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.checked if self.checked else None


@dataclass(frozen=True)
class CellOutcome:
    """One cell of the latest sample compared with what feedback established for it."""

    extraction_id: uuid.UUID
    document_id: uuid.UUID
    filename: str
    variable: str
    verdict: Literal["confirmed", "corrected"]
    old_value: Any
    old_version: int | None
    right_value: Any
    new_value: Any
    new_version: int | None
    outcome: Outcome
    comment: str


@dataclass
class SampleCheck:
    """The latest sample run, checked cell by cell against feedback from earlier runs."""

    job_id: uuid.UUID
    status: str
    created_at: datetime | None
    cells: list[CellOutcome] = field(default_factory=list)

    def counts(self, variable: str | None = None) -> dict[str, int]:
        """Cells per outcome, for one variable or all of them."""
        counter = Counter(c.outcome for c in self.cells
                          if variable is None or c.variable == variable)
        return {o: counter.get(o, 0) for o in OUTCOMES}


@dataclass
class Scorecard:
    project: str
    project_id: uuid.UUID
    reviewed: int
    versions: list[VersionScore]
    latest: SampleCheck | None


def _project(session: Session, ref: str | uuid.UUID | Project) -> Project:
    return ref if isinstance(ref, Project) else codebook.get_project(session, ref)


def _version_rows(session: Session, project: Project) -> dict[uuid.UUID | None, VersionScore]:
    """Every (variable, prompt version) that extracted something, plus every current prompt."""
    scores: dict[uuid.UUID | None, VersionScore] = {}
    counts = session.execute(
        select(Extraction.variable_id, Extraction.prompt_id,
               func.count(func.distinct(Extraction.document_id)))
        .join(Variable, Variable.id == Extraction.variable_id)
        .where(Variable.project_id == project.id)
        .group_by(Extraction.variable_id, Extraction.prompt_id)
    ).all()
    counted = {(vid, pid): n for vid, pid, n in counts}
    prompts = session.execute(
        select(Prompt, Variable)
        .join(Variable, Variable.id == Prompt.variable_id)
        .where(Variable.project_id == project.id)
    ).all()
    variables = {v.id: v for v in codebook.list_variables(session, project, include_deleted=True)}
    for prompt, variable in prompts:
        n = counted.pop((variable.id, prompt.id), 0)
        if n or prompt.is_current and variable.is_live:
            scores[prompt.id] = VersionScore(
                variable=variable.name, variable_id=variable.id, prompt_id=prompt.id,
                version=prompt.version, origin=prompt.origin.value, is_current=prompt.is_current,
                cells=n)
    for (vid, pid), n in counted.items():  # cells whose prompt row was deleted
        variable = variables[vid]
        key = pid or uuid.uuid5(uuid.NAMESPACE_OID, f"no-prompt:{vid}")
        scores[key] = VersionScore(variable=variable.name, variable_id=vid, prompt_id=None,
                                   version=None, origin=None, is_current=False, cells=n)
    order = {v.id: (v.deleted_at is not None, v.position, v.name) for v in variables.values()}
    return dict(sorted(scores.items(),
                       key=lambda kv: (order[kv[1].variable_id], kv[1].version or 0)))


def _cells_on_truths(
    session: Session, project: Project, truths: dict[tuple[uuid.UUID, uuid.UUID], Truth]
) -> list[Extraction]:
    if not truths:
        return []
    doc_ids = sorted({d for d, _ in truths})
    var_ids = {v for _, v in truths}
    rows: list[Extraction] = []
    for start in range(0, len(doc_ids), 1000):  # bounded IN lists
        rows += session.scalars(
            select(Extraction)
            .where(Extraction.document_id.in_(doc_ids[start:start + 1000]),
                   Extraction.variable_id.in_(var_ids)))
    rows.sort(key=lambda e: (as_utc(e.created_at), str(e.id)))
    return [e for e in rows if (e.document_id, e.variable_id) in truths]


def _score_versions(
    scores: dict[uuid.UUID | None, VersionScore],
    cells: list[Extraction],
    verdicts: dict[uuid.UUID, FeedbackView],
    truths: dict[tuple[uuid.UUID, uuid.UUID], Truth],
) -> None:
    # One judgement per (version, document): its own newest verdict if any, else its newest
    # extraction compared with the right value.
    chosen: dict[tuple[Any, uuid.UUID, uuid.UUID], tuple[Extraction, FeedbackView | None]] = {}
    for cell in cells:  # oldest first, so later rows replace earlier ones
        key = (cell.prompt_id, cell.document_id, cell.variable_id)
        verdict = verdicts.get(cell.id)
        previous = chosen.get(key)
        if previous is not None and previous[1] is not None and (
                verdict is None or verdict.updated_at < previous[1].updated_at):
            continue
        chosen[key] = (cell, verdict)
    for (prompt_id, document_id, variable_id), (cell, verdict) in chosen.items():
        score = scores.get(prompt_id) if prompt_id is not None else None
        if score is None:
            continue
        if verdict is not None:
            score.reviewed += 1
            score.checked += 1
            score.correct += int(verdict.is_correct)
            continue
        if cell.status is ExtractionStatus.FAILED:
            continue
        truth = truths[(document_id, variable_id)]
        score.checked += 1
        score.correct += int(same_value(cell.variable, cell.value, truth.value))


def _latest_sample(session: Session, project: Project) -> ProcessingJob | None:
    return session.scalar(
        select(ProcessingJob)
        .where(ProcessingJob.project_id == project.id, ProcessingJob.kind == JobKind.SAMPLE,
               ProcessingJob.status != JobStatus.PENDING)
        .order_by(ProcessingJob.created_at.desc(), ProcessingJob.id.desc())
        .limit(1)
    )


def _check_sample(
    session: Session, job: ProcessingJob, views: list[FeedbackView]
) -> SampleCheck:
    check = SampleCheck(job_id=job.id, status=job.status.value,
                        created_at=as_utc(job.created_at))
    truths = truths_by_cell(views, exclude_jobs={job.id})
    if not truths:
        return check
    versions = dict(session.execute(
        select(Prompt.id, Prompt.version).join(Extraction, Extraction.prompt_id == Prompt.id)
        .where(Extraction.job_id == job.id).distinct()).all())
    rows = session.execute(
        select(Extraction, Document.filename)
        .join(Document, Document.id == Extraction.document_id)
        .where(Extraction.job_id == job.id)
    ).all()
    for cell, filename in rows:
        truth = truths.get((cell.document_id, cell.variable_id))
        if truth is None:
            continue
        right = same_value(cell.variable, cell.value, truth.value)
        if cell.status is ExtractionStatus.FAILED:
            outcome: Outcome = "failed"
        elif truth.verdict == "corrected":
            outcome = "fixed" if right else "still_wrong"
        else:
            outcome = "kept" if right else "broken"
        check.cells.append(CellOutcome(
            extraction_id=cell.id, document_id=cell.document_id, filename=filename,
            variable=cell.variable.name, verdict=truth.verdict,
            old_value=truth.feedback.extracted_value, old_version=truth.feedback.prompt_version,
            right_value=truth.value, new_value=cell.value,
            new_version=versions.get(cell.prompt_id), outcome=outcome,
            comment=truth.feedback.comment,
        ))
    positions = {v.name: v.position for v in codebook.list_variables(
        session, job.project_id, include_deleted=True)}
    check.cells.sort(key=lambda c: (positions.get(c.variable, 0), c.variable, c.filename))
    return check


def build_scorecard(
    session: Session,
    project: str | uuid.UUID | Project,
    *,
    job: str | uuid.UUID | ProcessingJob | None = None,
) -> Scorecard:
    """The scorecard of a project.

    Args:
        session: an open session (read only).
        project: the project, by name or id.
        job: the sample run to check cell by cell; default the project's latest sample run.
    """
    proj = _project(session, project)
    verdicts = effective_feedback(session, proj)
    views = list(verdicts.values())
    truths = truths_by_cell(views)
    scores = _version_rows(session, proj)
    _score_versions(scores, _cells_on_truths(session, proj, truths), verdicts, truths)
    target = get_job(session, job, project=proj) if job is not None \
        else _latest_sample(session, proj)
    latest = _check_sample(session, target, views) if target is not None else None
    return Scorecard(project=proj.name, project_id=proj.id, reviewed=len(views),
                     versions=list(scores.values()), latest=latest)


# --------------------------------------------------------------------------- views


def _pct(score: VersionScore) -> str:
    if score.accuracy is None:
        return "–"
    return f"{score.accuracy:.0%} ({score.correct}/{score.checked})"


def scorecard_to_dict(card: Scorecard) -> dict[str, Any]:
    """A JSON-ready scorecard (what ``scorecard --json`` prints)."""
    latest = None
    if card.latest is not None:
        latest = {
            "job_id": str(card.latest.job_id),
            "status": card.latest.status,
            "counts": card.latest.counts(),
            "cells": [
                {"extraction_id": str(c.extraction_id), "document_id": str(c.document_id),
                 "filename": c.filename, "variable": c.variable, "verdict": c.verdict,
                 "old_value": c.old_value, "old_version": c.old_version,
                 "right_value": c.right_value, "new_value": c.new_value,
                 "new_version": c.new_version, "outcome": c.outcome, "comment": c.comment}
                for c in card.latest.cells
            ],
        }
    return {
        "project": card.project,
        "project_id": str(card.project_id),
        "reviewed": card.reviewed,
        "versions": [
            {"variable": s.variable, "version": s.version, "origin": s.origin,
             "is_current": s.is_current, "prompt_id": str(s.prompt_id) if s.prompt_id else None,
             "cells": s.cells, "reviewed": s.reviewed, "checked": s.checked,
             "correct": s.correct, "accuracy": s.accuracy}
            for s in card.versions
        ],
        "latest_sample": latest,
    }


def _md(value: Any) -> str:
    text = format_value(value) if value is not None else "(not stated)"
    return text.replace("|", "\\|").replace("\n", " ")


def scorecard_markdown(card: Scorecard) -> str:
    """The scorecard as Markdown (the Prefect artifact written after a sample run)."""
    lines = [f"# Scorecard: {card.project}", "",
             f"{card.reviewed} reviewed cell(s).", "",
             "## Accuracy per prompt version", "",
             "| variable | version | origin | current | cells | reviewed | checked | accuracy |",
             "|---|---|---|---|---|---|---|---|"]
    for s in card.versions:
        lines.append(
            f"| {s.variable} | {'v' + str(s.version) if s.version else '?'} | {s.origin or ''} "
            f"| {'yes' if s.is_current else ''} | {s.cells} | {s.reviewed} | {s.checked} "
            f"| {_pct(s)} |")
    if card.latest is None:
        lines += ["", "No sample run yet."]
        return "\n".join(lines) + "\n"
    counts = card.latest.counts()
    lines += ["", f"## Latest sample run {card.latest.job_id}", ""]
    if not card.latest.cells:
        lines.append("No cell of this run was reviewed in an earlier run, so there is nothing "
                     "to compare yet.")
        return "\n".join(lines) + "\n"
    lines.append(", ".join(f"{n} {o.replace('_', ' ')}" for o, n in counts.items()) + ".")
    lines += ["", ("| document | variable | verdict | old value | right value | new value "
                   "| versions | outcome |"), "|---|---|---|---|---|---|---|---|"]
    for c in card.latest.cells:
        versions = f"v{c.old_version or '?'} → v{c.new_version or '?'}"
        lines.append(f"| {_md(c.filename)} | {c.variable} | {c.verdict} | {_md(c.old_value)} "
                     f"| {_md(c.right_value)} | {_md(c.new_value)} | {versions} "
                     f"| {c.outcome.replace('_', ' ')} |")
    return "\n".join(lines) + "\n"


def sample_scorecard_markdown(session: Session, job_id: uuid.UUID | str) -> str | None:
    """The scorecard to publish at the end of a sample run, or None when there is none.

    Only sample runs of projects that have feedback get one: without verdicts there is
    nothing to score against.
    """
    job = get_job(session, job_id)
    if job.kind is not JobKind.SAMPLE:
        return None
    has_feedback = session.scalar(
        select(func.count(ExtractionFeedback.id))
        .join(Extraction, Extraction.id == ExtractionFeedback.extraction_id)
        .join(ProcessingJob, ProcessingJob.id == Extraction.job_id)
        .where(ProcessingJob.project_id == job.project_id)
    )
    if not has_feedback:
        return None
    return scorecard_markdown(build_scorecard(session, job.project_id, job=job))
