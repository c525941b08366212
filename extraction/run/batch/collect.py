"""Collecting finished provider batches: read, check, store — each batch once.

For every batch of the job not collected yet, the provider is asked for its status and
line counts (stored, so ``run collect`` and the job's log show lines as they complete). A
batch in a final status (completed, failed, expired, cancelled) is *claimed* — a
compare-and-set on its row, so two collectors never store it twice — and then:

1. its output and error files are read (:func:`~extraction.run.batch.lines.read_results`);
   lines that are not JSON, answer a ``custom_id`` the batch did not send, or repeat one are
   reported in the job's log and ignored;
2. its documents go through the same runner as a synchronous run (re-use, validation,
   grounding, support, confidence, one transaction per write batch with its counters and
   log entries), the extractor answered from the batch
   (:class:`~extraction.run.batch.replay.ReplayExtractor`); a document all of whose calls
   found an answer is stored;
3. a document with a call left unanswered (failed, expired, missing line) is not written
   but resubmitted once, whole, in a retry batch (its part number is fixed, so a second
   collector cannot make another); a document of a retry batch is stored whatever came
   back: a call that failed again is asked synchronously if ``batch_sync_fallback`` allows
   it, else its cells are stored as failed with the provider's reason; answers no call
   asked for (another ``custom_id``) are reported;
4. the row is marked collected, with the tokens its lines used.

A collector killed in the middle leaves the row claimed but not collected: after
``job_stale_seconds`` another collector takes it over, and the runner skips the documents
already written (the ``(job, document, variable)`` unique constraint backs that up).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, update

from extraction.db import session_scope
from extraction.models import LLMBatch, LogLevel, utcnow
from extraction.run.batch.context import TERMINAL_STATUSES, BatchContext
from extraction.run.batch.lines import (
    Answer,
    Results,
    custom_id,
    parse_custom_id,
    read_results,
)
from extraction.run.batch.replay import ReplayExtractor
from extraction.run.batch.submit import RETRY_PART_OFFSET, Part, add_parts
from extraction.run.plan import chunked
from extraction.run.runner import ChunkRunner

__all__ = ["collect_ready", "refresh"]


def refresh(ctx: BatchContext, row: LLMBatch) -> Any | None:
    """Ask the provider for the row's batch and store its status and line counts."""
    if not row.provider_batch_id:
        return None
    batch = ctx.api.retrieve(row.provider_batch_id)
    counts = batch.request_counts
    ctx.update(row.id, status=batch.status,
               lines_completed=int(getattr(counts, "completed", 0) or 0),
               lines_failed=int(getattr(counts, "failed", 0) or 0),
               output_file_id=batch.output_file_id, error_file_id=batch.error_file_id,
               error=_rejection(batch) or row.error)
    return batch


def _rejection(batch: Any) -> str | None:
    """The provider's reasons for refusing a batch (its ``errors``), as one line."""
    errors = getattr(batch, "errors", None)
    found = [(f"line {e.line}: " if e.line else "") + (e.message or e.code or "")
             for e in (errors.data or [])] if errors is not None else []
    return "; ".join(found)[:2000] or None


def _claim(ctx: BatchContext, row_id: uuid.UUID) -> bool:
    stale = utcnow() - timedelta(seconds=ctx.settings.job_stale_seconds)
    with session_scope() as session:
        result = session.execute(
            update(LLMBatch)
            .where(LLMBatch.id == row_id, LLMBatch.collected_at.is_(None),
                   or_(LLMBatch.claimed_at.is_(None), LLMBatch.claimed_at < stale))
            .values(claimed_at=utcnow())
            .execution_options(synchronize_session=False))
        return result.rowcount == 1


async def _store(ctx: BatchContext, document_ids: list[uuid.UUID],
                 answers: Mapping[uuid.UUID, Mapping[str, Answer]], *, resubmit: bool
                 ) -> ReplayExtractor:
    """Store documents' cells from their answers, through the synchronous run's runner;
    returns the extractor, which knows what was used and what must be resubmitted."""
    extractor = ReplayExtractor(ctx.llm, ctx.plan.mode, ctx.settings, answers,
                                fallback=ctx.settings.batch_sync_fallback, resubmit=resubmit)
    runner = ChunkRunner(ctx.plan, extractor, session_factory=session_scope,
                         documents_in_flight=max(4, 2 * ctx.settings.llm_concurrency),
                         batch_documents=ctx.settings.documents_per_chunk,
                         flush_seconds=ctx.settings.progress_flush_seconds, check_written=True)
    for chunk in chunked(document_ids, ctx.settings.documents_per_chunk):
        await runner.run_chunk(chunk)
    return extractor


def _by_document(results: Results) -> tuple[dict[uuid.UUID, dict[str, Answer]], list[str]]:
    """The answers per document and call key, and the ids that are not ours."""
    found: dict[uuid.UUID, dict[str, Answer]] = {}
    foreign: list[str] = []
    for line_id, answer in results.answers.items():
        parsed = parse_custom_id(line_id)
        if parsed is None:
            foreign.append(line_id)
        else:
            found.setdefault(parsed[1], {})[parsed[2]] = answer
    return found, foreign


def _unasked(ctx: BatchContext, documents: list[uuid.UUID],
             answers: Mapping[uuid.UUID, Mapping[str, Answer]], foreign: list[str],
             extractor: ReplayExtractor) -> list[str]:
    """Answers no request of this batch asked for (another batch's, or nobody's)."""
    ours = set(documents)
    unasked = list(foreign)
    for doc, keyed in answers.items():
        if doc not in ours:
            unasked += [custom_id(ctx.job_id, doc, key) for key in keyed]
        elif doc in extractor.replayed:
            unasked += [custom_id(ctx.job_id, doc, key) for key in keyed
                        if (doc, key) not in extractor.used]
    return unasked


async def _collect_one(ctx: BatchContext, row: LLMBatch, batch: Any | None) -> None:
    documents = [uuid.UUID(d) for d in row.document_ids]
    output = ctx.api.content(batch.output_file_id) if batch and batch.output_file_id else None
    errors = ctx.api.content(batch.error_file_id) if batch and batch.error_file_id else None
    results = read_results(output, errors)
    where = f"batch {row.provider_batch_id} (part {row.part})"
    if batch is not None and batch.status == "failed":
        ctx.log("batch_rejected", f"{where} was rejected by the provider: "
                f"{_rejection(batch) or 'no reason given'}", level=LogLevel.ERROR,
                details={"batch_id": row.provider_batch_id})
    elif batch is not None and batch.status in ("expired", "cancelled"):
        ctx.log("batch_" + batch.status, f"{where} {batch.status} with "
                f"{len(results.answers)} of {row.lines_total} lines answered",
                level=LogLevel.WARNING, details={"batch_id": row.provider_batch_id})
    answers, foreign = _by_document(results)
    extractor = await _store(ctx, documents, answers, resubmit=row.attempt == 1)
    problems = results.problems + [
        f"an answer for custom_id {line_id!r}, which this batch did not send: ignored"
        for line_id in _unasked(ctx, documents, answers, foreign, extractor)]
    if problems:
        ctx.log_many("batch_line_ignored", [f"{where}: {p}" for p in problems],
                     details={"batch_id": row.provider_batch_id})
    failed = extractor.to_resubmit
    if failed:
        retry_part = row.part + RETRY_PART_OFFSET
        if not any(r.part == retry_part for r in ctx.rows()):
            add_parts(ctx, [Part(document_ids=failed)], attempt=2, part_numbers=[retry_part])
        ctx.log("batch_lines_resubmitted", f"{where}: {len(failed)} documents had lines "
                f"that failed or expired ({'; '.join(sorted(extractor.reasons))[:500]}); "
                "resubmitted once", level=LogLevel.WARNING,
                details={"documents": [str(d) for d in failed]})
    ctx.update(row.id, collected_at=utcnow(), tokens_in=results.tokens_in,
               tokens_out=results.tokens_out, tokens_cached=results.tokens_cached)
    ctx.log("batch_collected", f"{where}: {len(results.answers)} lines read, "
            f"{len(documents) - len(failed)} documents stored",
            details={"batch_id": row.provider_batch_id, "tokens_in": results.tokens_in,
                     "tokens_out": results.tokens_out})


async def collect_ready(ctx: BatchContext) -> int:
    """Collect every batch of the job that reached a final status; returns how many."""
    collected = 0
    for row in ctx.rows(uncollected=True):
        if row.status == "preparing":
            continue
        batch = refresh(ctx, row) if row.provider_batch_id else None
        status = batch.status if batch is not None else row.status
        if status not in TERMINAL_STATUSES:
            continue
        if not _claim(ctx, row.id):
            continue
        await _collect_one(ctx, row, batch)
        collected += 1
    return collected
