"""Build a reviewed sample in the database directly: project, variables, prompts, job, cells.

Feedback, the review workbook and the scorecard only need rows to exist, not an LLM, so these
helpers insert them through the codebook service and the ORM. Values are chosen per test;
nothing here hides what a test asserts.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
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
)

__all__ = ["VARIABLES", "Sample", "add_job", "add_prompt_version", "make_sample"]

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
class Sample:
    project: Project
    variables: dict[str, Variable]
    documents: list[Document]
    prompts: dict[str, Prompt]
    jobs: list[ProcessingJob] = field(default_factory=list)
    cells: dict[tuple[int, str], Extraction] = field(default_factory=dict)

    @property
    def job(self) -> ProcessingJob:
        return self.jobs[0]


def _current_prompt(session: Session, variable: Variable) -> Prompt:
    prompt = session.scalar(
        select(Prompt).where(Prompt.variable_id == variable.id, Prompt.is_current.is_(True))
    )
    if prompt is None:  # no prompt generator hooked in: make v1 by hand
        prompt = Prompt(
            variable_id=variable.id, version=1, system_template="Extract from documents.",
            user_template=f"Variable {variable.name}: {variable.instructions}",
            origin=PromptOrigin.GENERATED, is_current=True,
        )
        session.add(prompt)
        session.flush()
    return prompt


def add_prompt_version(session: Session, variable: Variable, text: str) -> Prompt:
    """Make a new current prompt version for ``variable`` (as refinement would)."""
    old = _current_prompt(session, variable)
    old.is_current = False
    session.flush()
    new = Prompt(
        variable_id=variable.id, version=old.version + 1, system_template=old.system_template,
        user_template=text, origin=PromptOrigin.REFINED, parent_id=old.id, is_current=True,
    )
    session.add(new)
    session.flush()
    return new


def add_job(
    session: Session,
    sample: Sample,
    values: dict[tuple[int, str], Any],
    *,
    status: JobStatus = JobStatus.COMPLETE,
    kind: JobKind = JobKind.SAMPLE,
) -> ProcessingJob:
    """A finished job with one extraction per given (document index, variable name) value.

    A value of ``None`` is stored as status ``not_found``; the string ``"FAILED"`` as a failed
    cell. Every cell uses the variable's current prompt version.
    """
    job = ProcessingJob(project_id=sample.project.id, kind=kind, status=status,
                        documents_total=len(sample.documents), model="fake-model",
                        prompt_snapshot={})
    session.add(job)
    session.flush()
    for (doc_index, name), value in values.items():
        variable = sample.variables[name]
        prompt = _current_prompt(session, variable)
        job.prompt_snapshot = {**job.prompt_snapshot, str(variable.id): str(prompt.id)}
        document = sample.documents[doc_index]
        failed = value == "FAILED"
        cell = Extraction(
            job_id=job.id, document_id=document.id, variable_id=variable.id,
            prompt_id=prompt.id, model="fake-model", value=None if failed else value,
            confidence=None if value is None or failed else 0.9,
            evidence_quote=None if value is None or failed else f"quote for {value}",
            evidence_page=None if value is None or failed else 1,
            status=(ExtractionStatus.FAILED if failed else
                    ExtractionStatus.NOT_FOUND if value is None else ExtractionStatus.OK),
            error="boom" if failed else None,
        )
        session.add(cell)
        sample.cells[(doc_index, name)] = cell
    session.flush()
    sample.jobs.append(job)
    return job


def make_sample(
    session: Session,
    values: dict[tuple[int, str], Any] | None = None,
    *,
    n_documents: int = 3,
    name: str = "trials",
) -> Sample:
    """A project with the five :data:`VARIABLES`, ``n_documents`` documents and one job."""
    project = codebook.create_project(session, {"name": name, "domain_context": "Trials."})
    variables = {spec["name"]: codebook.add_variable(session, project, spec)
                 for spec in VARIABLES}
    documents = []
    for i in range(n_documents):
        text = f"Document {i}. Sponsor: Acme {i}. Phase 2. Enrolled {100 + i} participants."
        doc = Document(project_id=project.id, filename=f"doc{i}.txt", text=text,
                       content_hash=hashlib.sha256(text.encode()).hexdigest(),
                       page_offsets=[0], page_count=1, parse_status=ParseStatus.OK,
                       mime="text/plain", size_bytes=len(text))
        session.add(doc)
        documents.append(doc)
    session.flush()
    prompts = {n: _current_prompt(session, v) for n, v in variables.items()}
    sample = Sample(project=project, variables=variables, documents=documents, prompts=prompts)
    if values is None:
        values = {}
        for i in range(n_documents):
            values.update({(i, "sponsor"): f"Acme {i}", (i, "phase"): "Phase 2",
                           (i, "enrollment"): 100 + i, (i, "start_date"): "2020-01",
                           (i, "randomised"): True})
    add_job(session, sample, values)
    session.commit()
    return sample


def new_id() -> str:
    return str(uuid.uuid4())
