"""Everything a run decides before its first LLM call: options, documents, prompts, the plan.

These are the parse and prompt stages of a run and the bookkeeping around them, as plain
service functions over a session (no Prefect): the flows call them from thin tasks, and tests
call them directly.

* Options: mode and model come from the run's parameters, else the project's settings, else
  the global settings.
* Documents: a sample is drawn with ``random.Random(seed)`` from the project's usable
  documents ordered by id, so the same seed gives the same sample; a run records the seed it
  used. A full run takes every usable document, optionally those whose filename matches a
  glob. The chosen ids are stored on the job, so a resumed job works on the same set.
* Prompts: the current version of each live variable is snapshotted on the job when it
  starts; a resumed job keeps its snapshot, so it finishes with the prompts it began with.
* Resume: a job still PROCESSING whose heartbeat stopped (a killed process) can be run again;
  cells it already wrote are skipped (see :func:`pending_documents`).
"""

from __future__ import annotations

import fnmatch
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.settings import Settings
from extraction import codebook, prompts
from extraction.documents import parse_document
from extraction.errors import ConflictError, NotFoundError, StateError, ValidationError
from extraction.models import (
    Document,
    Extraction,
    JobKind,
    JobStatus,
    LogLevel,
    ParseStatus,
    ProcessingJob,
    Project,
    Prompt,
    Variable,
)
from extraction.run import jobs, progress
from extraction.run.results import PromptInfo, VariableInfo, alias_pairs

__all__ = [
    "MODES",
    "ParseOutcome",
    "RunPlan",
    "chunked",
    "create_run_job",
    "load_plan",
    "open_job",
    "parse_job_documents",
    "pending_documents",
    "resolve_options",
    "select_documents",
    "snapshot_prompts",
    "variable_info",
]

MODES = ("per_document", "per_variable")
_USABLE = (ParseStatus.OK, ParseStatus.PENDING)


@dataclass(frozen=True)
class RunPlan:
    """What the extract stage needs, read once and free of any session."""

    job_id: uuid.UUID
    project_id: uuid.UUID
    kind: JobKind
    mode: str
    model: str
    variables: tuple[VariableInfo, ...]
    prompts: dict[uuid.UUID, PromptInfo]  # by variable id
    document_ids: tuple[uuid.UUID, ...] = ()

    @property
    def prompt_ids(self) -> set[uuid.UUID]:
        return {p.id for p in self.prompts.values()}


@dataclass
class ParseOutcome:
    """What the parse stage did: documents parsed now, and those that cannot be extracted."""

    parsed: int = 0
    usable: int = 0
    unusable: list[str] = field(default_factory=list)


def resolve_options(
    project: Project, settings: Settings, *, mode: str | None = None, model: str | None = None
) -> tuple[str, str]:
    """(mode, model) for a run: explicit values, else the project's settings, else defaults."""
    project_settings = project.settings or {}
    chosen_mode = mode or project_settings.get("mode") or settings.extraction_mode
    if chosen_mode not in MODES:
        raise ValidationError(
            f"mode must be one of {', '.join(MODES)}, not '{chosen_mode}'", field="mode"
        )
    chosen_model = model or project_settings.get("model") or settings.llm_model
    return chosen_mode, str(chosen_model)


def _glob_to_like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def select_documents(
    session: Session,
    project: Project,
    *,
    n: int | None = None,
    seed: int | None = None,
    document_ids: Sequence[str | uuid.UUID] | None = None,
    filename_glob: str | None = None,
) -> list[uuid.UUID]:
    """The documents a run will process.

    Args:
        n: Draw a random sample of this size (all usable documents if fewer).
        seed: Seed of the sample; the same seed gives the same documents.
        document_ids: Exactly these documents (they must belong to the project).
        filename_glob: Only documents whose filename matches (``*`` and ``?``).

    Raises:
        ValidationError: for a bad size or id; NotFoundError for ids not in the project;
        ValidationError when nothing is left to process.
    """
    if document_ids:
        wanted: list[uuid.UUID] = []
        for ref in document_ids:
            try:
                wanted.append(ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref).strip()))
            except ValueError as exc:
                raise ValidationError(f"'{ref}' is not a document id", field="docs") from exc
        found = set(
            session.scalars(
                select(Document.id).where(
                    Document.project_id == project.id, Document.id.in_(wanted)
                )
            )
        )
        missing = [str(i) for i in wanted if i not in found]
        if missing:
            raise NotFoundError(
                f"project '{project.name}' has no document {', '.join(missing)}",
                field="docs",
                instance=missing[0],
            )
        return list(dict.fromkeys(wanted))
    if n is not None and n < 1:
        raise ValidationError("the sample size must be at least 1", field="n")
    query = select(Document.id).where(
        Document.project_id == project.id, Document.parse_status.in_(_USABLE)
    )
    if filename_glob:
        query = query.where(Document.filename.like(_glob_to_like(filename_glob), escape="\\"))
    ids = sorted(session.scalars(query), key=str)
    if filename_glob:  # LIKE is case-insensitive on SQLite: apply the glob exactly
        names = dict(session.execute(
            select(Document.id, Document.filename).where(Document.id.in_(ids))
        ).tuples().all()) if ids else {}
        ids = [i for i in ids if fnmatch.fnmatchcase(names[i], filename_glob)]
    if not ids:
        what = f" matching '{filename_glob}'" if filename_glob else ""
        raise ValidationError(
            f"project '{project.name}' has no documents{what} to process; "
            "add some with `extractflow docs add`",
            field="documents",
        )
    if n is not None and n < len(ids):
        ids = random.Random(seed).sample(ids, n)
    return ids


def create_run_job(
    session: Session,
    settings: Settings,
    *,
    kind: JobKind | str,
    project: str | uuid.UUID,
    n: int | None = None,
    seed: int | None = None,
    document_ids: Sequence[str] | None = None,
    filename_glob: str | None = None,
    mode: str | None = None,
    model: str | None = None,
    max_cost_usd: float | None = None,
    shards: int | None = None,
    shard_size: int | None = None,
    batch: bool = False,
) -> ProcessingJob:
    """A PENDING job with its documents chosen and its options resolved.

    A budget cap is kept in the job's parameters, so a resume keeps it; so are ``shards`` /
    ``shard_size`` (full runs): whichever process runs the job splits it into that many
    shards (:mod:`extraction.run.shards`). ``batch``: its requests go through the provider's
    Batch API (:mod:`extraction.run.batch`).
    """
    kind = JobKind(kind)
    project_row = codebook.get_project(session, project)
    if not codebook.list_variables(session, project_row):
        raise ValidationError(
            f"project '{project_row.name}' has no variables; add some with "
            "`extractflow variable add` first",
            field="variables",
        )
    chosen_mode, chosen_model = resolve_options(project_row, settings, mode=mode, model=model)
    if kind is JobKind.SAMPLE and not document_ids and seed is None:
        seed = random.SystemRandom().randrange(1, 2**31)
    if kind is JobKind.SAMPLE and not document_ids and n is None:
        n = 10
    ids = select_documents(
        session, project_row, n=n if kind is JobKind.SAMPLE else None, seed=seed,
        document_ids=document_ids, filename_glob=filename_glob,
    )
    parameters: dict[str, Any] = {"project": project_row.name}
    if kind is JobKind.SAMPLE:
        parameters.update({"n": n, "seed": seed} if not document_ids else {})
    if document_ids:
        parameters["document_ids"] = [str(i) for i in ids]
    if filename_glob:
        parameters["document_filter"] = filename_glob
    if max_cost_usd is not None:
        parameters["max_cost_usd"] = float(max_cost_usd)
    if shards is not None or shard_size is not None:
        if kind is not JobKind.FULL:
            raise ValidationError("only a full run can be split into shards", field="shards")
        from extraction.run.shards import split

        split([], shards=shards, shard_size=shard_size)  # checks the values
        parameters.update({"shards": shards} if shards else {"shard_size": shard_size})
    if batch:
        parameters["batch"] = True
    return jobs.create_job(
        session, project_row, kind, mode=chosen_mode, model=chosen_model,
        document_ids=ids, parameters=parameters,
    )


def open_job(
    session: Session, job_ref: str | uuid.UUID, *, stale_after: float, force: bool = False
) -> tuple[ProcessingJob, bool]:
    """Make a job ready to run: PENDING → PROCESSING, or pick up a crashed PROCESSING job.

    Returns ``(job, resumed)``. A job its budget cap stopped (CANCELLED "budget reached")
    is resumed too. A PROCESSING job whose heartbeat is fresher than
    ``stale_after`` seconds is probably still running somewhere: refused (ConflictError)
    unless ``force``. Finished jobs are refused (StateError): start a new run instead, which
    re-uses their cells at no cost.
    """
    job = jobs.get_job(session, job_ref)
    if job.status is JobStatus.PENDING:
        return jobs.start_job(session, job), False
    if jobs.stopped_by_budget(job):  # its cap stopped it: go on under the (new) cap
        return jobs.reopen_after_budget(session, job), True
    if job.status is JobStatus.PROCESSING:
        if not force and not jobs.is_stale(job, after_seconds=stale_after):
            raise ConflictError(
                f"job {job.id} is PROCESSING and was active less than {stale_after:.0f} s ago; "
                "it seems to be still running (wait, cancel it, or resume with --force)",
                instance=str(job.id),
            )
        progress.log_event(session, job.id, "job_resumed",
                           "resuming: cells already written by this job are kept and skipped",
                           level=LogLevel.WARNING)
        jobs.touch_job(session, job.id)
        return job, True
    raise StateError(
        f"job {job.id} is {job.status.value}; only PENDING or interrupted PROCESSING jobs can "
        "be run. Start a new run instead (unchanged cells are re-used, not re-asked)",
        field="status",
        instance=str(job.id),
    )


def parse_job_documents(
    session: Session, job: ProcessingJob, *, max_bytes: int | None = None
) -> ParseOutcome:
    """The parse stage: parse the job's documents that are not parsed yet.

    A document that cannot be parsed, or has no text, cannot be extracted: it is logged as a
    warning, counted as a failed document and dropped from the job's list (so a resumed job
    does not count it twice).
    """
    ids = [uuid.UUID(i) for i in (job.document_ids or [])]
    outcome = ParseOutcome()
    if not ids:
        return outcome
    unusable: list[Document] = []
    for start in range(0, len(ids), 500):
        batch = ids[start:start + 500]
        pending = session.scalars(
            select(Document).where(
                Document.id.in_(batch), Document.parse_status == ParseStatus.PENDING
            )
        )
        for document in pending:
            _parse_into(document, max_bytes=max_bytes)
            outcome.parsed += 1
        unusable += list(session.scalars(
            select(Document).where(
                Document.id.in_(batch), Document.parse_status != ParseStatus.OK
            )
        ))
    if unusable:
        dropped = {d.id for d in unusable}
        for document in unusable:
            reason = document.parse_error or f"document is {document.parse_status.value}"
            progress.log_event(
                session, job.id, "document_unusable",
                f"{document.filename}: cannot be extracted ({reason})",
                level=LogLevel.WARNING, document_id=document.id,
                details={"parse_status": document.parse_status.value, "error": reason},
            )
        job.document_ids = [str(i) for i in ids if i not in dropped]
        session.flush()
        progress.add_progress(session, job.id,
                              progress.ProgressDelta(documents_failed=len(dropped)))
        outcome.unusable = [d.filename for d in unusable]
    outcome.usable = len(ids) - len(unusable)
    return outcome


def _parse_into(document: Document, *, max_bytes: int | None) -> None:
    if not document.source_path:
        document.parse_status = ParseStatus.FAILED
        document.parse_error = "the document has no text and no source file to parse"
        return
    parsed = parse_document(document.source_path, max_bytes=max_bytes)
    document.parse_status = ParseStatus(parsed.status)
    document.parse_error = parsed.error
    document.text = parsed.text if parsed.ok else None
    document.page_offsets = list(parsed.page_offsets)
    document.page_count = parsed.page_count
    document.mime = parsed.mime or document.mime
    document.size_bytes = parsed.size_bytes or document.size_bytes
    document.content_hash = document.content_hash or parsed.content_hash


def snapshot_prompts(session: Session, job: ProcessingJob) -> dict[str, Any]:
    """The prompt stage: fix the prompt version of each live variable on the job.

    A job that already has a snapshot (a resumed one) keeps it.
    """
    if job.prompt_snapshot and job.prompt_snapshot.get("variables"):
        return job.prompt_snapshot
    project = session.get(Project, job.project_id)
    assert project is not None
    variables = codebook.list_variables(session, project)
    if not variables:
        raise ValidationError(
            f"project '{project.name}' has no variables to extract", field="variables"
        )
    entries = []
    for variable in variables:
        prompt = prompts.current_prompt(session, variable)
        entries.append({
            "variable_id": str(variable.id),
            "variable": variable.name,
            "prompt_id": str(prompt.id),
            "prompt_version": prompt.version,
        })
    job.prompt_snapshot = {"schema_version": project.schema_version, "variables": entries}
    session.flush()
    return job.prompt_snapshot


def variable_info(variable: Variable) -> VariableInfo:
    """The engine's plain value for a variable row."""
    return VariableInfo(
        id=variable.id,
        name=variable.name,
        label=variable.label,
        type=variable.type,
        instructions=variable.instructions,
        categories=tuple(variable.categories) if variable.categories else None,
        category_aliases=alias_pairs(variable.category_aliases),
        allow_other=variable.allow_other,
        multi_select=variable.multi_select,
        unit=variable.unit,
        format_hint=variable.format_hint,
        required=variable.required,
    )


def load_plan(session: Session, job: ProcessingJob) -> RunPlan:
    """The session-free plan of the extract stage, from the job's prompt snapshot."""
    entries = (job.prompt_snapshot or {}).get("variables") or []
    if not entries:
        raise StateError(f"job {job.id} has no prompt snapshot yet", instance=str(job.id))
    variable_ids = [uuid.UUID(e["variable_id"]) for e in entries]
    prompt_ids = [uuid.UUID(e["prompt_id"]) for e in entries]
    variables = {v.id: v for v in session.scalars(select(Variable).where(Variable.id.in_(variable_ids)))}
    prompt_rows = {p.id: p for p in session.scalars(select(Prompt).where(Prompt.id.in_(prompt_ids)))}
    missing = [str(i) for i in variable_ids if i not in variables]
    missing += [str(i) for i in prompt_ids if i not in prompt_rows]
    if missing:
        raise StateError(
            f"job {job.id} refers to variables or prompts that no longer exist: "
            + ", ".join(missing),
            instance=str(job.id),
        )
    infos = tuple(variable_info(variables[i]) for i in variable_ids)
    prompt_map = {variables[v].id: prompts.prompt_info(prompt_rows[p])
                  for v, p in zip(variable_ids, prompt_ids)}
    return RunPlan(
        job_id=job.id,
        project_id=job.project_id,
        kind=job.kind,
        mode=job.mode or "per_document",
        model=job.model or "",
        variables=infos,
        prompts=prompt_map,
        document_ids=tuple(uuid.UUID(i) for i in (job.document_ids or [])),
    )


def pending_documents(session: Session, plan: RunPlan) -> list[uuid.UUID]:
    """The plan's documents this job has not written yet (all of them on a first run).

    A document's cells are written in one transaction, so a document with any cell of this
    job is done; the rest is what a resumed run still has to do.
    """
    done = set(
        session.scalars(
            select(Extraction.document_id)
            .where(Extraction.job_id == plan.job_id)
            .group_by(Extraction.document_id)
            .having(func.count(Extraction.id) > 0)
        )
    )
    return [i for i in plan.document_ids if i not in done]


def chunked(ids: Sequence[uuid.UUID], size: int) -> list[list[uuid.UUID]]:
    """Split ``ids`` into chunks of ``size`` (the last one shorter)."""
    if size < 1:
        raise ValidationError("chunk size must be at least 1", field="documents_per_chunk")
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]
