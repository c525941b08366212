"""Collecting finished provider batches: read, check, store — each batch once.

For every batch of the job not collected yet, the provider is asked for its status and
line counts (stored, so ``run collect`` and the job's log show lines as they complete). A
batch in a final status (completed, failed, expired, cancelled) is *claimed* — a
compare-and-set on its row, so two collectors never store it twice — and then:

1. its output and error files are read (:func:`~extraction.run.batch.lines.read_results`);
   lines that are not JSON, answer a ``custom_id`` the batch did not send, or repeat one are
   reported in the job's log and ignored;
2. its documents' requests are recorded again, to know which answers each document needs;
   a document all of whose answers came back is stored now, through the same runner as a
   synchronous run (re-use, validation, grounding, support, confidence, one transaction per
   write batch with its counters and log entries);
3. a document with a failed, expired or missing line is resubmitted once, whole, in a retry
   batch (its part number is fixed, so a second collector cannot make another); a document
   of a retry batch is stored whatever came back: a line that failed again is asked
   synchronously if ``batch_sync_fallback`` allows it, else its cells are stored as failed
   with the provider's reason;
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
                 answers: Mapping[uuid.UUID, Mapping[str, Answer]], *, fallback: bool) -> None:
    """Store documents' cells from their answers, through the synchronous run's runner."""
    if not document_ids:
        return
    extractor = ReplayExtractor(ctx.llm, ctx.plan.mode, ctx.settings, answers,
                                fallback=fallback)
    runner = ChunkRunner(ctx.plan, extractor, session_factory=session_scope,
                         documents_in_flight=max(4, 2 * ctx.settings.llm_concurrency),
                         batch_documents=ctx.settings.documents_per_chunk,
                         flush_seconds=ctx.settings.progress_flush_seconds, check_written=True)
    for chunk in chunked(document_ids, ctx.settings.documents_per_chunk):
        await runner.run_chunk(chunk)


def _by_document(results: Results) -> dict[uuid.UUID, dict[str, Answer]]:
    found: dict[uuid.UUID, dict[str, Answer]] = {}
    for line_id, answer in results.answers.items():
        parsed = parse_custom_id(line_id)
        if parsed is not None:
            found.setdefault(parsed[1], {})[parsed[2]] = answer
    return found


async def _collect_one(ctx: BatchContext, row: LLMBatch, batch: Any | None) -> None:
    documents = [uuid.UUID(d) for d in row.document_ids]
    recorded = await ctx.record(documents)
    expected = {custom_id(ctx.job_id, doc, key): doc for doc, bodies in recorded.items()
                for key in bodies}
    output = ctx.api.content(batch.output_file_id) if batch and batch.output_file_id else None
    errors = ctx.api.content(batch.error_file_id) if batch and batch.error_file_id else None
    results = read_results(output, errors, set(expected))
    where = f"batch {row.provider_batch_id} (part {row.part})"
    if results.problems:
        ctx.log_many("batch_line_ignored", [f"{where}: {p}" for p in results.problems],
                     details={"batch_id": row.provider_batch_id})
    if batch is not None and batch.status == "failed":
        ctx.log("batch_rejected", f"{where} was rejected by the provider: "
                f"{_rejection(batch) or 'no reason given'}", level=LogLevel.ERROR,
                details={"batch_id": row.provider_batch_id})
    elif batch is not None and batch.status in ("expired", "cancelled"):
        ctx.log("batch_" + batch.status, f"{where} {batch.status} with "
                f"{len(results.answers)} of {len(expected)} lines answered",
                level=LogLevel.WARNING, details={"batch_id": row.provider_batch_id})
    answers = _by_document(results)
    failed: list[uuid.UUID] = []
    for doc, bodies in recorded.items():
        got = answers.get(doc, {})
        if any(key not in got or not got[key].ok for key in bodies):
            failed.append(doc)
    store = documents
    if failed and row.attempt == 1:
        retry_part = row.part + RETRY_PART_OFFSET
        if not any(r.part == retry_part for r in ctx.rows()):
            add_parts(ctx, [Part(document_ids=failed)], attempt=2, part_numbers=[retry_part])
            reasons = sorted({a.error for doc in failed for a in answers.get(doc, {}).values()
                              if a.error} or {"lines missing from the results"})
            ctx.log("batch_lines_resubmitted", f"{where}: {len(failed)} documents had lines "
                    f"that failed or expired ({'; '.join(reasons)[:500]}); resubmitted once",
                    level=LogLevel.WARNING, details={"documents": [str(d) for d in failed]})
        store = [d for d in documents if d not in set(failed)]
    await _store(ctx, store, answers, fallback=ctx.settings.batch_sync_fallback)
    ctx.update(row.id, collected_at=utcnow(), tokens_in=results.tokens_in,
               tokens_out=results.tokens_out, tokens_cached=results.tokens_cached)
    ctx.log("batch_collected", f"{where}: {len(results.answers)} lines read, "
            f"{len(store)} documents stored", details={"batch_id": row.provider_batch_id,
                                                       "tokens_in": results.tokens_in,
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
