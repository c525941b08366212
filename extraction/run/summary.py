"""The aggregate stage of a run: job totals, per-variable quality figures, the final status.

The summary is computed from the stored extractions (not from in-memory counters), so it is
right after a resume too, and is kept on ``job.summary`` for the CLI and exports; the flow
also publishes :func:`summary_markdown` as a Prefect artifact.
"""

from __future__ import annotations

import shlex
import uuid
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from extraction.errors import StateError
from extraction.models import Extraction, ExtractionStatus, JobStatus, LogLevel, ProcessingJob
from extraction.run import jobs, progress

__all__ = ["Outcome", "all_failed_reason", "cache_hit_share", "cost_text", "finalize_job",
           "summarize_job", "summary_markdown"]

Outcome = Literal["complete", "cancelled", "failed"]


def summarize_job(session: Session, job: ProcessingJob) -> dict[str, Any]:
    """Per-variable fill rate, not_found and failed counts, mean confidence, tokens, re-use."""
    E = Extraction
    query = (
        select(
            E.variable_id,
            E.status,
            func.count(E.id),
            func.avg(E.confidence),
            func.coalesce(func.sum(E.tokens_in), 0),
            func.coalesce(func.sum(E.tokens_out), 0),
            func.count(E.reused_from_id),
        )
        .where(E.job_id == job.id)
        .group_by(E.variable_id, E.status)
    )
    stats: dict[uuid.UUID, dict[str, Any]] = {}
    for variable_id, status, count, mean_conf, t_in, t_out, reused in session.execute(query):
        entry = stats.setdefault(variable_id, {
            "cells": 0, "ok": 0, "not_found": 0, "failed": 0, "mean_confidence": None,
            "tokens_in": 0, "tokens_out": 0, "reused": 0,
        })
        entry["cells"] += count
        entry[ExtractionStatus(status).value] += count
        entry["tokens_in"] += int(t_in)
        entry["tokens_out"] += int(t_out)
        entry["reused"] += reused
        if status is ExtractionStatus.OK and mean_conf is not None:
            entry["mean_confidence"] = round(float(mean_conf), 4)
    variables = []
    for item in (job.prompt_snapshot or {}).get("variables", []):
        entry = stats.get(uuid.UUID(item["variable_id"]), {
            "cells": 0, "ok": 0, "not_found": 0, "failed": 0, "mean_confidence": None,
            "tokens_in": 0, "tokens_out": 0, "reused": 0,
        })
        cells = entry["cells"]
        variables.append({
            "variable": item["variable"],
            "prompt_version": item["prompt_version"],
            **entry,
            "fill_rate": round(entry["ok"] / cells, 4) if cells else None,
        })
    return {
        "documents_total": job.documents_total,
        "documents_completed": job.documents_completed,
        "documents_failed": job.documents_failed,
        "cells": sum(v["cells"] for v in variables),
        "cells_reused": job.cells_reused,
        "llm_calls": job.llm_calls,
        **_second_opinions(session, job),
        "tokens_in": job.tokens_in,
        "tokens_out": job.tokens_out,
        "tokens_cached": job.tokens_cached or 0,
        "cache_hit_share": cache_hit_share(job),
        "cost_usd": job.cost_usd,
        "cost": cost_text(job),
        "max_cost_usd": (job.parameters or {}).get("max_cost_usd"),
        "variables": variables,
    }


def cache_hit_share(job: ProcessingJob) -> float | None:
    """Share of the job's input tokens the server read from its prompt cache."""
    return round((job.tokens_cached or 0) / job.tokens_in, 4) if job.tokens_in else None


def cost_text(job: ProcessingJob) -> str:
    """The job's cost for people: dollars, or why there is no figure."""
    if job.cost_usd is not None:
        return f"${job.cost_usd:.4f}"
    return "unknown price" if job.llm_calls else "$0 (no LLM call)"


def _second_opinions(session: Session, job: ProcessingJob) -> dict[str, Any]:
    """Of the job's calls, those of second opinions (logged per batch), and the cells they
    left disputed; nothing when none were asked."""
    from extraction.models import ProcessingLog

    details = session.scalars(select(ProcessingLog.details).where(
        ProcessingLog.job_id == job.id, ProcessingLog.event == "second_opinion_calls")).all()
    if not details:
        return {}
    disputed = session.scalar(select(func.count(Extraction.id)).where(
        Extraction.job_id == job.id, Extraction.opinion == "disputed"))
    return {"second_opinion_calls": sum(int((d or {}).get("calls") or 0) for d in details),
            "cells_disputed": int(disputed or 0)}


def all_failed_reason(session: Session, job: ProcessingJob) -> str | None:
    """Why a run in which nothing succeeded failed, or None when something succeeded.

    A run that got no answer at all (every cell failed: invalid output, a context too long
    for every document, a provider error on every call) is not COMPLETE: its exit code, the
    job list and the default export must not present it as a finished dataset.
    """
    E = Extraction
    counts = {ExtractionStatus(status): n for status, n in session.execute(
        select(E.status, func.count(E.id)).where(E.job_id == job.id).group_by(E.status))}
    failed = counts.get(ExtractionStatus.FAILED, 0)
    answered = counts.get(ExtractionStatus.OK, 0) + counts.get(ExtractionStatus.NOT_FOUND, 0)
    if answered or not (failed or job.documents_failed):
        return None
    error = session.execute(
        select(E.error, func.count(E.id).label("n"))
        .where(E.job_id == job.id, E.status == ExtractionStatus.FAILED, E.error.is_not(None))
        .group_by(E.error).order_by(func.count(E.id).desc()).limit(1)
    ).first()
    cells = f"all {failed} cells failed" if failed else \
        f"all {job.documents_failed} documents failed"
    return f"no answer at all: {cells}" + (f"; most often: {error[0]}" if error else "")


def finalize_job(
    session: Session, job_id: uuid.UUID, outcome: Outcome, *, reason: str | None = None
) -> ProcessingJob:
    """Store the summary and move the job to its final status.

    A job cancelled meanwhile (``extractflow job cancel``) stays CANCELLED whatever the flow
    concluded; ``cancelled`` on a job already CANCELLED only refreshes its summary.
    """
    job = session.get(ProcessingJob, job_id)
    if job is None:
        raise StateError(f"job {job_id} disappeared", instance=str(job_id))
    session.refresh(job)
    if job.status is JobStatus.PROCESSING:
        if outcome == "complete":
            failed_all = all_failed_reason(session, job)
            if failed_all is not None:
                outcome, reason = "failed", failed_all
        try:
            if outcome == "complete":
                job = jobs.finish_job(session, job)
            elif outcome == "cancelled":
                job = jobs.transition(session, job, JobStatus.CANCELLED,
                                      error=reason or "cancelled")
            else:
                job = jobs.fail_job(session, job, reason or "the run failed")
        except StateError:
            session.refresh(job)  # cancelled at the same moment: that status wins
    job.summary = summarize_job(session, job)
    level = LogLevel.ERROR if job.status is JobStatus.FAILED else LogLevel.INFO
    message = (
        f"{job.status.value}: {job.documents_completed} documents done, "
        f"{job.documents_failed} failed of {job.documents_total}; {job.llm_calls} LLM calls, "
        f"{job.cells_reused} cells re-used"
    )
    if job.status is JobStatus.FAILED and job.error:
        message += f" — {job.error}"
    progress.log_event(session, job.id, "job_finished", message, level=level,
                       details={"status": job.status.value})
    session.flush()
    return job


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "–" if value is None else pattern.format(value)


def summary_markdown(job: ProcessingJob) -> str:
    """The run's summary as a markdown table (the Prefect artifact at the end of a run)."""
    summary = job.summary or {}
    share = cache_hit_share(job)
    cost = f" · cost {cost_text(job)}" + (
        f" · cache hits {share:.0%} of input tokens" if share is not None else "")
    cap = (job.parameters or {}).get("max_cost_usd")
    if cap is not None:
        cost += f" · cap ${float(cap):.4f}"
    versions = ", ".join(f"{v['variable']} v{v['prompt_version']}"
                         for v in (job.prompt_snapshot or {}).get("variables", []))
    lines = [
        f"## {job.project.name} · {job.kind.value.lower()} job `{job.id}` — {job.status.value}",
        "",
        f"Prompt versions: {versions or '–'}",
        "",
        (f"{job.documents_total} documents: {job.documents_completed} completed, "
         f"{job.documents_failed} failed · mode {job.mode} · model `{job.model}` · "
         f"{job.llm_calls} LLM calls · {job.cells_reused} cells re-used · tokens "
         f"{job.tokens_in} in / {job.tokens_out} out{cost}"),
        "",
    ]
    if job.error:
        lines += [f"**Error:** {job.error}", ""]
    lines += [
        ("| variable | prompt | fill rate | ok | not found | failed | mean confidence "
         "| tokens in | tokens out | re-used |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in summary.get("variables", []):
        lines.append(
            f"| {v['variable']} | v{v['prompt_version']} | {_fmt(v['fill_rate'], '{:.0%}')} "
            f"| {v['ok']} | {v['not_found']} | {v['failed']} | {_fmt(v['mean_confidence'])} "
            f"| {v['tokens_in']} | {v['tokens_out']} | {v['reused']} |"
        )
    review = f"extractflow review html {job.id} -o review-{str(job.id)[:8]}.html"
    export = f"extractflow export {shlex.quote(job.project.name)} --job {str(job.id)[:8]}"
    lines += ["", f"Results: `extractflow job results {str(job.id)[:8]}` · export: `{export}`",
              "", f"Review every value beside its evidence: `{review}`"]
    return "\n".join(lines) + "\n"
