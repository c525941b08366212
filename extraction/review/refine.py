"""Corrections → new prompt versions: ask the LLM to rewrite a variable's instruction block.

For each variable with *pending* corrections (wrong verdicts recorded since the variable's last
refinement), refinement

1. builds a request (:func:`build_request`): the project context, the codebook (so the new
   block does not overlap with other variables), the current instruction block without its
   worked examples, every pending correction — a document excerpt around where the right value
   (else the evidence, else the wrong value) appears, the wrong value, the right value and the
   reviewer's comment — and a few answers reviewers confirmed, to keep working;
2. asks the LLM (through :class:`~extraction.llm.client.LLMClient`, response model
   :class:`RefinedBlock`: the new block and a rationale) to rewrite the block with general
   guidance that explains the corrections;
3. checks the answer (heading kept, categories kept, type line kept, about the variable, an
   instruction and not a description of the documents, no document delimiters) and appends the
   corrections as worked examples after the examples the prompt already had, keeping the newest
   that fit the example budget (:func:`examples_budget`);
4. scores the rewrite on held-out documents (:mod:`extraction.review.holdout`): the reviewed
   cells are split by document; only the learning part's corrections are sent in step 1, and
   the rewrite must score at least as well as the current prompt on the held-out part;
5. stores it as a new prompt version — origin ``refined``, parent = the current version,
   rationale = what was learned from how many corrections plus the LLM's rationale — and makes
   it current. A dry run stops before storing and returns the proposed diff; ``force`` stores
   a rewrite that failed the held-out check (both scores are reported either way).

Variables without pending corrections are left alone. A failure of one variable's request is
reported for that variable; the others go on (an error that would fail every request, such as
bad credentials, is raised).

The steps live in their own modules: the request (:mod:`.refine_request`), the call
(:mod:`.refine_ask`), checking and storing the answers (:mod:`.refine_store`) and the report
(:mod:`.refine_report`); this module runs them in order and scores the drafts on the
held-out part. Their public names are re-exported here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.settings import Settings, get_settings
from extraction import codebook, prompts
from extraction.models import Document, ExtractionStatus, ProcessingJob, Project
from extraction.review import holdout
from extraction.review.corrections import same_value
from extraction.review.feedback import FeedbackView, effective_feedback, get_job
from extraction.review.refine_ask import (
    Ask,
    LLMAsk,
    RefinedBlock,
    llm_ask,
    propose,
    propose_then_close,
)
from extraction.review.refine_report import RefinementReport, report_markdown, report_to_dict
from extraction.review.refine_request import (
    MAX_EXAMPLES_BUDGET,
    MIN_EXAMPLES_BUDGET,
    Correction,
    RefinementPlan,
    build_request,
    examples_budget,
    pending_corrections,
    plan_refinements,
)
from extraction.review.refine_store import RefinementResult, apply_proposals

__all__ = [
    "MAX_EXAMPLES_BUDGET",
    "MIN_EXAMPLES_BUDGET",
    "Ask",
    "Correction",
    "LLMAsk",
    "RefinedBlock",
    "RefinementPlan",
    "RefinementReport",
    "RefinementResult",
    "apply_proposals",
    "build_request",
    "examples_budget",
    "llm_ask",
    "pending_corrections",
    "plan_refinements",
    "propose",
    "refine_prompts",
    "report_markdown",
    "report_to_dict",
]


def refine_prompts(
    session: Session,
    project: str | uuid.UUID | Project,
    ask: Ask,
    *,
    job: str | uuid.UUID | ProcessingJob | None = None,
    variables: Sequence[str] | None = None,
    dry_run: bool = False,
    settings: Settings | None = None,
    extract: holdout.Extract | None = None,
    force: bool = False,
    held_out: bool = True,
) -> RefinementReport:
    """Refine every variable with pending corrections (see the module docstring).

    Args:
        session: an open session; new versions are flushed, the caller commits.
        project: the project, by name or id.
        ask: how to call the LLM (see :func:`llm_ask`).
        job: only corrections on this job's extractions.
        variables: only these variable names.
        dry_run: compute and return the proposed diffs; store nothing.
        settings: for the example budget (default: read now).
        extract: how the held-out documents are extracted again (default: the run's
            Extractor over the configured endpoint).
        force: store a rewrite even when it scores worse on the held-out part.
        held_out: keep a held-out part and check the rewrites on it (default).

    Raises:
        NotFoundError: unknown project, job or variable.
        LLMError: a fatal provider error (nothing is stored).
    """
    settings = settings or get_settings()
    proj = project if isinstance(project, Project) else codebook.get_project(session, project)
    job_row = get_job(session, job, project=proj) if job is not None else None
    views = list(effective_feedback(session, proj, **({"job": job_row} if job_row else {}))
                 .values())
    held = holdout.split_documents(views)[1] if held_out else set()
    plans, skipped = plan_refinements(session, proj, job=job_row, variables=variables,
                                      settings=settings, exclude_documents=held)
    report = RefinementReport(project=proj.name, dry_run=dry_run, skipped=skipped)
    report.held_out_documents = sorted({v.filename for v in views if v.document_id in held})
    if not plans:
        return report
    model = (proj.settings or {}).get("model")  # the project's model, as runs use
    if isinstance(ask, LLMAsk) and ask.model is None:
        ask.model = model
    answers = _run(propose_then_close(ask, plans, concurrency=settings.llm_concurrency))
    check = None
    if held:
        extractor = extract or holdout.extractor_check(settings, model=model)
        held_views = [v for v in views if v.document_id in held]

        def check(drafts: list[RefinementResult]) -> dict[str, holdout.HeldOutScore]:
            return _score_held_out(session, proj, plans, drafts, held_views, extractor,
                                   settings)

    report.results = apply_proposals(session, plans, answers, dry_run=dry_run, check=check,
                                     force=force)
    return report


def _score_held_out(
    session: Session,
    project: Project,
    plans: Sequence[RefinementPlan],
    drafts: list[RefinementResult],
    held_views: list[FeedbackView],
    extract: holdout.Extract,
    settings: Settings,
) -> dict[str, holdout.HeldOutScore]:
    """Extract the held-out documents again with the drafts; score against the verdicts."""
    from extraction.run.plan import variable_info
    from extraction.run.results import DocumentInput, PromptInfo

    by_name = {d.variable: d for d in drafts}
    refined = {p.variable_id: (p, by_name[p.variable]) for p in plans if p.variable in by_name}
    views = [v for v in held_views if v.variable_id in refined]
    if not views:
        return {}
    mode = (project.settings or {}).get("mode") or settings.extraction_mode
    live = codebook.list_variables(session, project)
    if mode == "per_variable":  # one call per variable: ask only the refined ones
        live = [v for v in live if v.id in refined]
    infos = [variable_info(v) for v in live]
    prompt_infos: dict[uuid.UUID, PromptInfo] = {}
    for variable in live:
        info = prompts.prompt_info(prompts.current_prompt(session, variable))
        if variable.id in refined:
            info = dataclasses.replace(info, id=uuid.uuid4(), version=info.version + 1,
                                       user_template=refined[variable.id][1].user_template)
        prompt_infos[variable.id] = info
    documents = [DocumentInput(id=d.id, filename=d.filename, text=d.text or "",
                               page_offsets=tuple(d.page_offsets or (0,)))
                 for d in session.scalars(select(Document).where(
                     Document.id.in_({v.document_id for v in views})).order_by(Document.filename))]
    cells = _run(extract(documents, infos, prompt_infos, mode))
    rows = {v.id: v for v in live}
    scores: dict[str, holdout.HeldOutScore] = {}
    for view in views:
        score = scores.setdefault(view.variable, holdout.HeldOutScore())
        score.cells += 1
        score.current += bool(view.is_correct)
        if view.filename not in score.documents:
            score.documents.append(view.filename)
        cell = cells.get((view.document_id, view.variable_id))
        if cell is None or cell.status is ExtractionStatus.FAILED:
            score.failed += 1
            continue
        score.refined += same_value(rows[view.variable_id], cell.value, view.right_value)
    return scores


def _run(coro: Awaitable[Any]) -> Any:
    """Run ``coro`` from sync code, also when an event loop is already running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]
