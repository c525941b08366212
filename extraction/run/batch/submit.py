"""Submitting a job's requests as provider batches, so that a kill at any point is harmless.

For the documents not yet in any batch of the job (and not written), the requests are
recorded (:mod:`extraction.run.batch.replay`) and cut into parts of at most
``batch_max_requests`` lines and ``batch_max_bytes`` bytes; a document's lines always stay
in one part, so its answers arrive together. Each part is then, in this order:

1. a row in ``llm_batches`` (status ``preparing``, its documents) — committed;
2. its JSONL uploaded; the file id stored — committed;
3. the batch created with metadata naming the job and the part; the batch id stored —
   committed.

A process killed after 1 or 2 leaves a ``preparing`` row. The next run (``run collect``,
``run resume``, the scheduled collect) first looks in the provider's list of batches for one
with that job and part in its metadata — a kill between 3 and its commit — and adopts it;
only if there is none does it upload (again) and create the batch. So a batch is never
created twice for a part, and never forgotten. Re-recording a part's requests gives the same
lines: the prompts are the job's snapshot and the documents do not change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import func, select

from extraction.db import session_scope
from extraction.models import LLMBatch, LogLevel, utcnow
from extraction.run.batch.context import BatchContext
from extraction.run.plan import pending_documents

__all__ = ["RETRY_PART_OFFSET", "Part", "add_parts", "finish_submissions", "split_parts",
           "submit_new_documents"]

#: A retry batch's part number is its first batch's plus this, so it is made once at most.
RETRY_PART_OFFSET = 100_000


@dataclass
class Part:
    """Documents and their JSONL lines, within the provider's limits."""

    document_ids: list[uuid.UUID] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    size: int = 0

    def data(self) -> bytes:
        return "".join(self.lines).encode()


def split_parts(lines_by_document: dict[uuid.UUID, list[str]], *, max_requests: int,
                max_bytes: int) -> list[Part]:
    """Cut documents' lines into parts; a document's lines are never split across parts
    (one document larger than a limit gets a part of its own, which the provider may
    refuse: its lines then fail like any failed line)."""
    parts: list[Part] = []
    current = Part()
    for document_id, lines in lines_by_document.items():
        size = sum(len(line.encode()) for line in lines)
        if current.lines and (len(current.lines) + len(lines) > max_requests
                              or current.size + size > max_bytes):
            parts.append(current)
            current = Part()
        current.document_ids.append(document_id)
        current.lines += lines
        current.size += size
    if current.document_ids:
        parts.append(current)
    return parts


def add_parts(ctx: BatchContext, parts: list[Part], *, attempt: int = 1,
              part_numbers: list[int] | None = None) -> dict[int, Part]:
    """Store a ``preparing`` row per part (committed); returns the parts by number."""
    with session_scope() as session:
        last = session.scalar(select(func.max(LLMBatch.part)).where(
            LLMBatch.job_id == ctx.job_id, LLMBatch.part < RETRY_PART_OFFSET)) or 0
        numbered: dict[int, Part] = {}
        for index, part in enumerate(parts):
            number = part_numbers[index] if part_numbers else last + 1 + index
            session.add(LLMBatch(
                job_id=ctx.job_id, part=number, attempt=attempt, status="preparing",
                document_ids=[str(d) for d in part.document_ids],
                lines_total=len(part.lines)))
            numbered[number] = part
    return numbered


async def submit_new_documents(ctx: BatchContext) -> dict[int, Part]:
    """Rows for the job's documents in no batch yet; returns the new parts by number."""
    rows = ctx.rows()
    in_batches = {uuid.UUID(d) for row in rows for d in row.document_ids}
    with session_scope() as session:
        todo = [d for d in pending_documents(session, ctx.plan) if d not in in_batches]
    if not todo:
        return {}
    recorded = await ctx.record(todo)
    lines = {doc: ctx.lines(doc, bodies) for doc, bodies in recorded.items() if bodies}
    parts = split_parts(lines, max_requests=ctx.settings.batch_max_requests,
                        max_bytes=ctx.settings.batch_max_bytes)
    # Documents with nothing to ask (every cell re-used) join the first part, so the
    # collection of that part copies their cells.
    empty = [d for d in todo if d not in lines]
    if empty:
        if not parts:
            parts = [Part()]
        parts[0].document_ids += empty
    return add_parts(ctx, parts)


async def finish_submissions(ctx: BatchContext, fresh: dict[int, Part]) -> int:
    """Upload and create the batch of every ``preparing`` row; returns how many were made.

    ``fresh`` holds the parts just stored by this process (their lines are at hand and no
    earlier process can have created their batch); other ``preparing`` rows are adopted
    from the provider's list when their batch exists there.
    """
    made = 0
    for row in ctx.rows(uncollected=True):
        if row.status != "preparing" or row.provider_batch_id:
            continue
        metadata = {"extractflow_job": str(ctx.job_id), "extractflow_part": str(row.part)}
        if row.part not in fresh:
            found = ctx.api.find(metadata)
            if found is not None:
                ctx.update(row.id, provider_batch_id=found.id, input_file_id=found.input_file_id,
                           status=found.status, submitted_at=utcnow())
                ctx.log("batch_adopted", f"part {row.part}: batch {found.id} was created "
                        "before the process stopped; adopted, not submitted again",
                        level=LogLevel.WARNING, details={"batch_id": found.id})
                continue
        part = fresh.get(row.part)
        if part is None:
            documents = [uuid.UUID(d) for d in row.document_ids]
            recorded = await ctx.record(documents)
            part = Part(document_ids=documents,
                        lines=[line for doc, bodies in recorded.items()
                               for line in ctx.lines(doc, bodies)])
        if not part.lines:  # only re-used cells: nothing to ask the provider
            ctx.update(row.id, status="completed", lines_total=0, submitted_at=utcnow())
            continue
        file_id = row.input_file_id
        if file_id is None:
            file_id = ctx.api.upload(part.data(), f"extractflow-{ctx.job_id}-{row.part}.jsonl")
            ctx.update(row.id, input_file_id=file_id, lines_total=len(part.lines))
        batch = ctx.api.create(file_id, metadata)
        ctx.update(row.id, provider_batch_id=batch.id, status=batch.status,
                   submitted_at=utcnow())
        made += 1
        ctx.log("batch_submitted", f"part {row.part}: batch {batch.id} with "
                f"{len(part.lines)} requests for {len(part.document_ids)} documents"
                + (" (resubmission)" if row.attempt > 1 else ""),
                details={"batch_id": batch.id, "input_file_id": file_id, "part": row.part,
                         "attempt": row.attempt, "lines": len(part.lines)})
    return made
