"""The extract stage of a run, one chunk of documents at a time, without Prefect.

For each chunk, :class:`ChunkRunner`:

1. reads the chunk's documents and, in one query, the cells this job already wrote (a resumed
   run skips those documents) and the cells it can re-use: an earlier extraction of the same
   document content (``content_hash``), with the same prompt version and model, whose status is
   ``ok`` or ``not_found``. Re-used cells are copied (``reused_from_id`` points at the
   original) and cost no LLM call — an unchanged re-run makes none;
2. sends the remaining (document, variables) to the :class:`~extraction.run.extractor.Extractor`,
   many documents at once on one event loop; the number of documents in flight is bounded
   and the LLM client's limiter bounds the calls;
3. writes results in batches — one transaction holds a batch's extraction rows, its error
   log entries and its progress counters, so the three never disagree — after every
   ``batch_documents`` documents, after ``flush_seconds``, and at the end of the chunk.

A document's failure stays a document's failure: its cells are stored as ``failed`` and
logged (document, variable, attempts, the provider's message), and the chunk goes on. Only a
fatal error (:func:`~extraction.errors.is_fatal`: bad credentials, unknown model) stops the
run, because it would fail every document.

Cancellation is cooperative: ``stop`` (an :class:`asyncio.Event` the flow sets when the job or
its flow run is cancelled) is checked before each document starts; documents already in
flight finish and are written, the others are left for nobody — a cancelled job is final.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from extraction.errors import FatalRunError, is_fatal
from extraction.llm.limits import CallsStopped
from extraction.models import Document, Extraction, ExtractionStatus, LogLevel
from extraction.run import progress
from extraction.run import rows as row_builders
from extraction.run.budget import Budget
from extraction.run.plan import RunPlan
from extraction.run.results import (
    CellResult,
    DocumentInput,
    DocumentResult,
    PromptInfo,
    VariableInfo,
)
from extraction.run.reuse import reusable_cells

__all__ = ["ChunkOutcome", "ChunkRunner", "DocumentExtractor", "FatalRunError", "is_fatal"]


class DocumentExtractor(Protocol):
    """What the runner needs of the engine (``extraction.run.extractor.Extractor`` fits)."""

    async def extract_document(
        self,
        document: DocumentInput,
        variables: Sequence[VariableInfo],
        prompts: dict[uuid.UUID, PromptInfo],
    ) -> DocumentResult: ...


@dataclass
class ChunkOutcome:
    """What one chunk did; the flow sums these for its progress artifact."""

    documents: int = 0
    documents_completed: int = 0
    documents_failed: int = 0
    documents_skipped: int = 0  # already written (resume) or not started (cancel)
    cells_written: int = 0
    cells_reused: int = 0
    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    stopped: bool = False
    #: Why the run stopped early when it was its own decision (the budget cap).
    stop_reason: str | None = None

    def add(self, other: ChunkOutcome) -> None:
        for name in ("documents", "documents_completed", "documents_failed",
                     "documents_skipped", "cells_written", "cells_reused", "llm_calls",
                     "tokens_in", "tokens_out"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + other.cost_usd
        self.stopped = self.stopped or other.stopped
        self.stop_reason = self.stop_reason or other.stop_reason


@dataclass
class _DocWork:
    document: DocumentInput
    to_extract: list[VariableInfo]
    reused_rows: list[dict[str, Any]]


@dataclass
class _Batch:
    rows: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    delta: progress.ProgressDelta = field(default_factory=progress.ProgressDelta)
    documents: int = 0
    #: Of the batch's LLM calls, those of second opinions; logged once per batch.
    second_opinion_calls: int = 0


class ChunkRunner:
    """Runs chunks of one job's documents through an extractor and stores the results.

    One instance per run, shared by its chunks (they may overlap on the same event loop).

    Args:
        plan: The job's session-free plan.
        extractor: The engine.
        session_factory: A context manager factory giving a committed-on-success session
            (``extraction.db.session_scope``); it is used from a worker thread, so database
            work never blocks the event loop.
        documents_in_flight: How many documents are extracted at the same time in this run.
        batch_documents: Write after this many finished documents…
        flush_seconds: …or after this long, whichever comes first.
        stop: Set when the run must stop starting documents (cancellation).
        check_written: Look for cells this job already wrote in each chunk (a resumed job);
            a fresh job has none, so the flow turns the query off.
        stop_after_unreachable: Stop the run (fatal) when this many documents in a row
            finished without any call reaching the LLM server; 0 never stops. A server that
            is down would otherwise fail every remaining document, each after its retries.
        budget: The run's cost cap (:mod:`extraction.run.budget`): a document starts only
            if its estimated cost fits; when one does not, ``stop`` is set, the documents in
            flight finish and are written, and the event is logged.
    """

    def __init__(
        self,
        plan: RunPlan,
        extractor: DocumentExtractor,
        *,
        session_factory: Callable[[], Any],
        documents_in_flight: int,
        batch_documents: int = 50,
        flush_seconds: float = 1.0,
        stop: asyncio.Event | None = None,
        check_written: bool = True,
        stop_after_unreachable: int = 0,
        budget: Budget | None = None,
    ) -> None:
        self.plan = plan
        self.check_written = check_written
        self.extractor = extractor
        self.session_factory = session_factory
        self.batch_documents = max(1, batch_documents)
        self.flush_seconds = flush_seconds
        self.stop = stop or asyncio.Event()
        self._doc_slots = asyncio.Semaphore(max(1, documents_in_flight))
        self._write_lock = asyncio.Lock()
        self._fatal: FatalRunError | None = None
        self._names = {v.id: v.name for v in plan.variables}
        self.stop_after_unreachable = stop_after_unreachable
        self._unreachable_streak = 0
        self.budget = budget
        self._budget_logged = False

    @property
    def fatal(self) -> FatalRunError | None:
        return self._fatal

    # ------------------------------------------------------------ reading

    def _load(self, document_ids: Sequence[uuid.UUID]) -> tuple[list[_DocWork], int]:
        plan = self.plan
        with self.session_factory() as session:
            documents = list(session.execute(
                select(Document.id, Document.filename, Document.text, Document.page_offsets,
                       Document.content_hash).where(Document.id.in_(document_ids))
            ).tuples())
            written = set(session.scalars(
                select(Extraction.document_id).where(
                    Extraction.document_id.in_(document_ids),
                    Extraction.job_id == plan.job_id,
                ).distinct()
            )) if self.check_written else set()
            reusable = self._reusable(session, [d for d in documents if d[0] not in written])
        order = {doc_id: i for i, doc_id in enumerate(document_ids)}
        documents.sort(key=lambda d: order[d[0]])
        work: list[_DocWork] = []
        for doc_id, filename, text, offsets, content_hash in documents:
            if doc_id in written:
                continue
            document = DocumentInput(
                id=doc_id, filename=filename, text=text or "",
                page_offsets=tuple(offsets or (0,)), content_hash=content_hash,
            )
            reused_rows, to_extract = [], []
            for variable in plan.variables:
                prompt = plan.prompts[variable.id]
                source = reusable.get((content_hash, prompt.id)) if content_hash else None
                if source is not None:
                    reused_rows.append(
                        row_builders.copied_row(self.plan, source, doc_id, variable.id))
                else:
                    to_extract.append(variable)
            work.append(_DocWork(document, to_extract, reused_rows))
        return work, len(written)

    def pending_work(self, document_ids: Sequence[uuid.UUID]
                     ) -> list[tuple[DocumentInput, list[VariableInfo]]]:
        """The documents of ``document_ids`` this job has not written, each with the
        variables still to ask (those re-use cannot fill): what a batch run submits."""
        work, _ = self._load(document_ids)
        return [(w.document, w.to_extract) for w in work if w.to_extract]

    def _reusable(
        self, session: Session, documents: list[tuple[Any, ...]]
    ) -> dict[tuple[str, uuid.UUID], Extraction]:
        return reusable_cells(
            session, project_id=self.plan.project_id,
            content_hashes=[d[4] for d in documents if d[4]],
            prompt_ids=self.plan.prompt_ids, model=self.plan.model,
            exclude_job=self.plan.job_id)

    # ------------------------------------------------------------ extracting

    async def run_chunk(self, document_ids: Sequence[uuid.UUID]) -> ChunkOutcome:
        """Extract and store one chunk. Raises :class:`FatalRunError` if the run must stop."""
        outcome = ChunkOutcome(documents=len(document_ids))
        if self._fatal is not None:
            raise self._fatal
        if self.stop.is_set():
            outcome.documents_skipped = len(document_ids)
            outcome.stopped = True
            return outcome
        work, already = await asyncio.to_thread(self._load, document_ids)
        outcome.documents_skipped += already
        batch = _Batch()
        last_flush = time.monotonic()

        async def one(item: _DocWork) -> tuple[_DocWork, DocumentResult | None, str | None]:
            if not item.to_extract:
                return item, None, None
            async with self._doc_slots:
                if self.stop.is_set() or self._fatal is not None:
                    raise _NotStarted()
                reservation = None
                if self.budget is not None:
                    reservation = self.budget.reserve(item.document, item.to_extract)
                    if reservation is None:
                        await self._budget_reached()
                        raise _NotStarted()
                result: DocumentResult | None = None
                try:
                    result = await self.extractor.extract_document(
                        item.document, item.to_extract,
                        {v.id: self.plan.prompts[v.id] for v in item.to_extract},
                    )
                except CallsStopped:  # interrupted before its next call: not a failure
                    raise _NotStarted() from None
                except Exception as exc:
                    if is_fatal(exc):
                        raise
                    return item, None, f"{type(exc).__name__}: {exc}"
                finally:
                    if reservation is not None and self.budget is not None:
                        self.budget.settle(reservation, result)
                return item, result, None

        pending = {asyncio.ensure_future(one(item)) for item in work}
        try:
            while pending:
                done, pending = await asyncio.wait(
                    pending, timeout=self.flush_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                for future in done:
                    exc = future.exception()
                    if isinstance(exc, _NotStarted):
                        outcome.documents_skipped += 1
                        outcome.stopped = True
                        continue
                    if exc is not None:
                        if is_fatal(exc):
                            if self._fatal is None:
                                self._fatal = FatalRunError(str(getattr(exc, "detail", exc)), exc)
                            continue
                        raise exc
                    item, result, error = future.result()
                    self._collect(batch, item, result, error, outcome)
                    self._watch_reachability(result)
                due = time.monotonic() - last_flush >= self.flush_seconds
                if batch.documents and (batch.documents >= self.batch_documents or due):
                    await self._flush(batch)
                    batch, last_flush = _Batch(), time.monotonic()
                elif due:
                    last_flush = time.monotonic()
        finally:
            for future in pending:
                future.cancel()
            if batch.documents:
                await self._flush(batch)
        if self.stop.is_set():
            outcome.stopped = True
        if self._fatal is not None:
            raise self._fatal
        return outcome

    async def _budget_reached(self) -> None:
        """Stop starting documents and say why in the job's log (once)."""
        self.stop.set()
        if self._budget_logged or self.budget is None:
            return
        self._budget_logged = True
        budget = self.budget

        def write() -> None:
            with self.session_factory() as session:
                progress.log_event(
                    session, self.plan.job_id, "budget_reached",
                    f"budget reached: ${budget.spent_usd:.4f} spent + ${budget.in_flight_usd:.4f} "
                    f"in flight; the next document would pass the ${budget.cap_usd:.4f} cap. "
                    "Documents in flight finish; no new LLM call starts",
                    level=LogLevel.WARNING,
                    details={"spent_usd": budget.spent_usd, "in_flight_usd": budget.in_flight_usd,
                             "cap_usd": budget.cap_usd})

        await asyncio.to_thread(write)

    def _watch_reachability(self, result: DocumentResult | None) -> None:
        """Count documents in a row whose calls never reached the server; stop at the limit."""
        if result is None or not result.llm_calls:
            return
        if not result.unreachable:
            self._unreachable_streak = 0
            return
        self._unreachable_streak += 1
        if self._fatal is None and self.stop_after_unreachable \
                and self._unreachable_streak >= self.stop_after_unreachable:
            reason = next((c.error for c in result.cells if c.error), "connection failed")
            self._fatal = FatalRunError(
                f"the LLM server could not be reached for {self._unreachable_streak} documents "
                f"in a row ({reason}); the run stopped rather than fail every remaining "
                "document the same way. Cells already extracted are kept: start the run again "
                "once the server is back, and they are reused")

    def _collect(self, batch: _Batch, item: _DocWork, result: DocumentResult | None,
                 error: str | None, outcome: ChunkOutcome) -> None:
        doc = item.document
        rows = list(item.reused_rows)
        failed_cells: list[CellResult] = []
        if item.to_extract:
            cells = {c.variable_id: c for c in (result.cells if result is not None else [])}
            for variable in item.to_extract:
                cell = cells.get(variable.id)
                if cell is None:
                    cell = CellResult(
                        variable_id=variable.id, status=ExtractionStatus.FAILED,
                        error=error or "the engine returned no answer for this variable",
                        attempts=result.attempts if result is not None else 0,
                        prompt_id=self.plan.prompts[variable.id].id,
                    )
                rows.append(row_builders.cell_row(self.plan, doc.id, cell))
                if cell.status is ExtractionStatus.FAILED:
                    failed_cells.append(cell)
        if failed_cells:
            batch.logs += row_builders.failure_logs(self.plan, self._names, doc, failed_cells)
        batch.rows += rows
        batch.documents += 1
        delta = batch.delta
        if failed_cells:
            delta.documents_failed += 1
            outcome.documents_failed += 1
        else:
            delta.documents_completed += 1
            outcome.documents_completed += 1
        delta.cells_reused += len(item.reused_rows)
        outcome.cells_reused += len(item.reused_rows)
        outcome.cells_written += len(rows)
        if result is not None:
            delta += progress.ProgressDelta(
                llm_calls=result.llm_calls, tokens_in=result.tokens_in,
                tokens_out=result.tokens_out, cost_usd=result.cost_usd,
                tokens_cached=result.tokens_cached,
            )
            outcome.llm_calls += result.llm_calls
            batch.second_opinion_calls += result.second_opinion_calls
            outcome.tokens_in += result.tokens_in
            outcome.tokens_out += result.tokens_out
            if result.cost_usd is not None:
                outcome.cost_usd = (outcome.cost_usd or 0.0) + result.cost_usd

    # ------------------------------------------------------------ writing

    async def _flush(self, batch: _Batch) -> None:
        async with self._write_lock:
            await asyncio.to_thread(self._write, batch)

    def _write(self, batch: _Batch) -> None:
        from extraction.models import ProcessingLog

        with self.session_factory() as session:
            # Core executemany: no ORM bookkeeping for rows nobody reads back here.
            if batch.rows:
                session.execute(insert(Extraction.__table__), batch.rows)
            logs = batch.logs + row_builders.opinion_log(
                self.plan, batch.second_opinion_calls, batch.documents)
            if logs:
                session.execute(insert(ProcessingLog.__table__), logs)
            progress.add_progress(session, self.plan.job_id, batch.delta)


class _NotStarted(Exception):
    """A document that was not started because the run is stopping."""

