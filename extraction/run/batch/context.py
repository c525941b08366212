"""What the steps of a batch run share: the job's plan, the clients, the stored batch rows.

Every database change is its own short transaction (``extraction.db.session_scope``), so what
a step learned from the provider — a file id, a batch id, a status — is committed before the
next call to the provider can fail or the process can be killed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from config.settings import Settings
from extraction.db import session_scope
from extraction.llm.batch_api import BatchAPI
from extraction.llm.client import LLMClient
from extraction.models import LLMBatch, LogLevel
from extraction.run import progress
from extraction.run.batch.lines import custom_id, request_line
from extraction.run.batch.replay import record_document
from extraction.run.plan import RunPlan, chunked
from extraction.run.runner import ChunkRunner

__all__ = ["TERMINAL_STATUSES", "BatchContext"]

#: Provider statuses a batch does not leave.
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
_RECORD_CHUNK = 200


class _NoExtractor:
    async def extract_document(self, *args: Any) -> Any:  # pragma: no cover - never called
        raise AssertionError("a batch run's reader does not extract")


@dataclass
class BatchContext:
    """One batch run's plan, settings and clients (the LLM client shapes requests)."""

    plan: RunPlan
    settings: Settings
    llm: LLMClient
    api: BatchAPI

    @property
    def job_id(self) -> uuid.UUID:
        return self.plan.job_id

    def reader(self) -> ChunkRunner:
        """The runner's view of documents still to do and variables re-use cannot fill."""
        return ChunkRunner(self.plan, _NoExtractor(), session_factory=session_scope,
                           documents_in_flight=1)

    async def record(self, document_ids: Sequence[uuid.UUID]
                     ) -> dict[uuid.UUID, dict[str, dict[str, Any]]]:
        """Per document not written yet, its request bodies by call key."""
        reader = self.reader()
        found: dict[uuid.UUID, dict[str, dict[str, Any]]] = {}
        for chunk in chunked(list(document_ids), _RECORD_CHUNK):
            for document, variables in reader.pending_work(chunk):
                prompts = {v.id: self.plan.prompts[v.id] for v in variables}
                found[document.id] = await record_document(
                    self.llm, self.plan.mode, self.settings, document, variables, prompts)
        return found

    def lines(self, document_id: uuid.UUID, bodies: dict[str, dict[str, Any]]) -> list[str]:
        """The JSONL request lines of one document."""
        return [request_line(custom_id(self.job_id, document_id, key), body)
                for key, body in bodies.items()]

    # ------------------------------------------------------------------ rows

    def rows(self, *, uncollected: bool = False) -> list[LLMBatch]:
        with session_scope() as session:
            query = select(LLMBatch).where(LLMBatch.job_id == self.job_id)
            if uncollected:
                query = query.where(LLMBatch.collected_at.is_(None))
            rows = list(session.scalars(query.order_by(LLMBatch.part)))
            session.expunge_all()
            return rows

    def update(self, row_id: uuid.UUID, **values: Any) -> None:
        with session_scope() as session:
            row = session.get(LLMBatch, row_id)
            assert row is not None
            for name, value in values.items():
                setattr(row, name, value)

    def log(self, event: str, message: str, *, level: LogLevel = LogLevel.INFO,
            details: dict[str, Any] | None = None) -> None:
        with session_scope() as session:
            progress.log_event(session, self.job_id, event, message, level=level,
                               details=details)

    def log_many(self, event: str, messages: Iterable[str], *,
                 level: LogLevel = LogLevel.WARNING, details: dict[str, Any] | None = None
                 ) -> None:
        with session_scope() as session:
            for message in messages:
                progress.log_event(session, self.job_id, event, message, level=level,
                                   details=details)
