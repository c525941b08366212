"""Put runs' results straight into the database: projects, documents, jobs and extractions.

Exports, feedback and reports only need extraction rows to exist, not an LLM, so tests build
them here through the codebook service and the ORM. Every value a test asserts on is passed in
by the test; the defaults (confidence 0.9, model ``fake-model``) are visible below.

    project = make_project(session, variables=[{"name": "age", "type": "NUMBER"}])
    docs = add_documents(session, project, 2)
    job = add_job(session, project, {(docs[0], "age"): 42, (docs[1], "age"): Cell(None)})
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from extraction import codebook
from extraction.models import (
    Document,
    Extraction,
    ExtractionStatus,
    JobKind,
    JobStatus,
    ParseStatus,
    ProcessingJob,
    Project,
    Prompt,
    PromptOrigin,
    Variable,
    utcnow,
)

__all__ = [
    "VARIABLES",
    "Cell",
    "add_document",
    "add_documents",
    "add_job",
    "add_prompt",
    "make_project",
]

VARIABLES: list[dict[str, Any]] = [
    {"name": "sponsor", "type": "TEXT", "instructions": "The sponsoring organisation."},
    {"name": "phase", "type": "CATEGORY", "categories": ["Phase 1", "Phase 2", "Phase 3"],
     "instructions": "The trial phase."},
    {"name": "enrollment", "type": "NUMBER", "unit": "participants",
     "instructions": "Number of participants enrolled."},
    {"name": "start_date", "type": "DATE", "instructions": "When the trial started."},
    {"name": "randomised", "type": "BOOLEAN", "instructions": "Whether it is randomised."},
]


@dataclass
class Cell:
    """One extraction as a test describes it. ``status`` defaults from the value."""

    value: Any = None
    status: ExtractionStatus | str | None = None
    confidence: float | None = 0.9
    evidence: str | None = None
    page: int | None = None
    model: str = "fake-model"
    tokens_in: int = 0
    tokens_out: int = 0

    def resolved_status(self) -> ExtractionStatus:
        if self.status is not None:
            return ExtractionStatus(self.status)
        return ExtractionStatus.NOT_FOUND if self.value is None else ExtractionStatus.OK


def make_project(session: Session, name: str = "trials",
                 variables: Sequence[Mapping[str, Any]] = VARIABLES) -> Project:
    """A project with ``variables`` added in order (codebook order = list order)."""
    project = codebook.create_project(session, {"name": name, "domain_context": "Trials."})
    for spec in variables:
        codebook.add_variable(session, project, dict(spec))
    session.flush()
    return project


def add_document(session: Session, project: Project, filename: str,
                 text: str | None = None) -> Document:
    """A parsed document (status ok); its text defaults to a line naming the file."""
    text = f"The document {filename}." if text is None else text
    document = Document(
        project_id=project.id, filename=filename, text=text,
        content_hash=hashlib.sha256(f"{filename}\0{text}".encode()).hexdigest(),
        page_offsets=[0], page_count=1, parse_status=ParseStatus.OK, mime="text/plain",
        size_bytes=len(text.encode()),
    )
    session.add(document)
    session.flush()
    return document


def add_documents(session: Session, project: Project, n: int,
                  prefix: str = "doc") -> list[Document]:
    return [add_document(session, project, f"{prefix}{i:03d}.txt") for i in range(n)]


def add_prompt(session: Session, variable: Variable, version: int | None = None) -> Prompt:
    """A new current prompt version for ``variable`` (the previous one stops being current)."""
    current = session.scalar(
        select(Prompt).where(Prompt.variable_id == variable.id, Prompt.is_current.is_(True)))
    if current is not None:
        current.is_current = False
        session.flush()
    if version is None:
        version = 1 if current is None else current.version + 1
    prompt = Prompt(
        variable_id=variable.id, version=version, system_template="Extract from documents.",
        user_template=f"Variable {variable.name}: {variable.instructions}",
        origin=PromptOrigin.GENERATED if current is None else PromptOrigin.REFINED,
        parent_id=current.id if current is not None else None, is_current=True,
    )
    session.add(prompt)
    session.flush()
    return prompt


def _prompt_for(session: Session, variable: Variable) -> Prompt:
    current = session.scalar(
        select(Prompt).where(Prompt.variable_id == variable.id, Prompt.is_current.is_(True)))
    return current or add_prompt(session, variable)


def add_job(
    session: Session,
    project: Project,
    cells: Mapping[tuple[Document, str], Any],
    *,
    kind: JobKind = JobKind.FULL,
    status: JobStatus = JobStatus.COMPLETE,
    finished_at: datetime | None = None,
    model: str = "fake-model",
    tokens_in: int = 0,
    tokens_out: int = 0,
) -> ProcessingJob:
    """A job with one extraction per ``(document, variable name) → value or Cell``.

    Every cell uses its variable's current prompt (v1 is made when there is none). A job that
    is not COMPLETE gets no ``finished_at`` unless one is given.
    """
    now = utcnow()
    if finished_at is None and status is JobStatus.COMPLETE:
        finished_at = now
    documents = {doc.id for doc, _ in cells}
    job = ProcessingJob(
        project_id=project.id, kind=kind, status=status, model=model,
        documents_total=len(documents), documents_completed=len(documents),
        progress=1.0 if status is JobStatus.COMPLETE else 0.0, prompt_snapshot={},
        started_at=(finished_at or now) - timedelta(minutes=1), finished_at=finished_at,
        llm_calls=len(documents), tokens_in=tokens_in, tokens_out=tokens_out,
    )
    session.add(job)
    session.flush()
    variables: dict[str, Variable] = {}
    snapshot: dict[str, str] = {}
    for (document, name), spec in cells.items():
        cell = spec if isinstance(spec, Cell) else Cell(spec)
        variable = variables.get(name) or codebook.get_variable(session, project, name)
        variables[name] = variable
        prompt = _prompt_for(session, variable)
        snapshot[str(variable.id)] = str(prompt.id)
        session.add(Extraction(
            job_id=job.id, document_id=document.id, variable_id=variable.id,
            prompt_id=prompt.id, model=cell.model, value=cell.value,
            confidence=cell.confidence, evidence_quote=cell.evidence,
            evidence_page=cell.page, grounded=cell.evidence is not None or None,
            status=cell.resolved_status(), error="failed in test"
            if cell.resolved_status() is ExtractionStatus.FAILED else None,
            tokens_in=cell.tokens_in, tokens_out=cell.tokens_out,
        ))
    job.prompt_snapshot = snapshot
    session.flush()
    return job
