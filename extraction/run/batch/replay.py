"""The same extractor, twice: once to write down its requests, once to hand it the answers.

Batch mode must ask exactly what synchronous mode asks (messages, response schema in the
configured instructor mode, chunks of a long document) and treat the answers exactly the same
(validation, grounding, support, confidence, failed cells). Rather than a second copy of that
logic, the synchronous :class:`~extraction.run.extractor.Extractor` runs unchanged with a
different client:

* :class:`RecordingClient` shapes each call with the real client's
  :meth:`~extraction.llm.client.LLMClient.prepare` and keeps the request body instead of
  sending it (the call then "fails", and the cells made from that are thrown away);
* :class:`ReplayClient` shapes the call the same way, finds the batch's answer by the body's
  key, and lets :meth:`~extraction.llm.client.LLMClient.complete` parse and validate it as
  if it had just arrived. A call without an answer (failed, expired, missing) marks its
  document for resubmission on a first batch — :class:`ReplayExtractor` then leaves the
  document unwritten — and on a retry batch is a failed call, or with
  ``batch_sync_fallback`` a synchronous one; re-asks of invalid output are synchronous too,
  only with the fallback allowed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from openai.types.chat import ChatCompletion

from config.settings import Settings
from extraction.errors import LLMError
from extraction.llm.client import LLMClient, LLMResult
from extraction.llm.limits import CallsStopped
from extraction.run.batch.lines import Answer, call_key
from extraction.run.extractor import Extractor
from extraction.run.results import DocumentInput, DocumentResult, PromptInfo, VariableInfo

__all__ = ["RecordingClient", "ReplayClient", "ReplayExtractor", "record_document"]


class _Recorded(LLMError):
    """The call was written down for a batch, not sent (never shown to a user)."""


class _Delegate:
    """Everything but :meth:`complete` is the real client's (mode, model, prices)."""

    def __init__(self, llm: LLMClient) -> None:
        self.llm = llm

    def __getattr__(self, name: str) -> Any:
        return getattr(self.llm, name)

    def _prepare(self, messages: Sequence[Mapping[str, Any]], response_model: type[Any],
                 temperature: float, max_tokens: int | None, model: str | None
                 ) -> tuple[Any, dict[str, Any]]:
        return self.llm.prepare(messages, response_model, temperature=temperature,
                                max_tokens=max_tokens, model=model or self.llm.model)


class RecordingClient(_Delegate):
    """Keeps each request body in :attr:`bodies` (by call key) instead of sending it."""

    def __init__(self, llm: LLMClient) -> None:
        super().__init__(llm)
        self.bodies: dict[str, dict[str, Any]] = {}

    async def complete(self, messages: Sequence[Mapping[str, Any]], response_model: type[Any],
                       *, temperature: float = 0.0, max_tokens: int | None = None,
                       model: str | None = None) -> LLMResult[Any]:
        _, body = self._prepare(messages, response_model, temperature, max_tokens, model)
        self.bodies[call_key(body)] = body
        raise _Recorded("recorded for a batch")


class _Unanswered(LLMError):
    """No batch answer for this call; its document goes into the retry batch."""


class ReplayClient(_Delegate):
    """Answers each call from a batch's results (by the request body's key).

    Args:
        resubmit: A call without an answer is noted in :attr:`unanswered` (its document
            will be resubmitted) instead of failing or going synchronous.
    """

    def __init__(self, llm: LLMClient, answers: Mapping[str, Answer], *, fallback: bool,
                 resubmit: bool = False) -> None:
        super().__init__(llm)
        self.answers = answers
        self.fallback = fallback
        self.resubmit = resubmit
        self.used: set[str] = set()
        self.unanswered: list[str] = []

    async def complete(self, messages: Sequence[Mapping[str, Any]], response_model: type[Any],
                       *, temperature: float = 0.0, max_tokens: int | None = None,
                       model: str | None = None) -> LLMResult[Any]:
        prepared = self._prepare(messages, response_model, temperature, max_tokens, model)
        key = call_key(prepared[1])
        self.used.add(key)
        answer = self.answers.get(key)
        options: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens,
                                   "model": model}
        if answer is not None and answer.ok:
            completion = ChatCompletion.model_validate(answer.body)
            return await self.llm.complete(messages, response_model, answered=completion,
                                           max_reasks=None if self.fallback else 0,
                                           prepared=prepared, **options)
        if self.resubmit:
            self.unanswered.append(answer.error if answer is not None and answer.error
                                   else "the line is missing from the batch's results")
            raise _Unanswered("no batch answer yet")
        if self.fallback:
            return await self.llm.complete(messages, response_model, **options)
        why = answer.error if answer is not None else "the request was not in the batch"
        raise LLMError(f"the batch gave no answer ({why}), also after one resubmission; "
                       "set EXTRACTFLOW_BATCH_SYNC_FALLBACK=true to ask such lines "
                       "synchronously")


async def record_document(llm: LLMClient, mode: str, settings: Settings,
                          document: DocumentInput, variables: Sequence[VariableInfo],
                          prompts: Mapping[uuid.UUID, PromptInfo]) -> dict[str, dict[str, Any]]:
    """The request bodies a synchronous run would send for ``document``, by call key."""
    client = RecordingClient(llm)
    extractor = Extractor(client, mode=mode, settings=settings)  # type: ignore[arg-type]
    await extractor.extract_document(document, variables, prompts)
    return client.bodies


class ReplayExtractor:
    """A :class:`~extraction.run.runner.DocumentExtractor` answering from batch results.

    Args:
        answers: Per document, the batch's answers by call key.
        resubmit: A first batch: a document with a call left unanswered is not written
            (the runner skips it, as for a stop) and lands in :attr:`to_resubmit` with the
            reasons in :attr:`reasons`.

    :attr:`used` holds the ``(document, call key)`` of every answer a call asked for, so the
    caller can report answers nobody asked for.
    """

    def __init__(self, llm: LLMClient, mode: str, settings: Settings,
                 answers: Mapping[uuid.UUID, Mapping[str, Answer]], *, fallback: bool,
                 resubmit: bool = False) -> None:
        self.llm = llm
        self.mode = mode
        self.settings = settings
        self.answers = answers
        self.fallback = fallback
        self.resubmit = resubmit
        self.replayed: set[uuid.UUID] = set()
        self.used: set[tuple[uuid.UUID, str]] = set()
        self.to_resubmit: list[uuid.UUID] = []
        self.reasons: set[str] = set()

    async def extract_document(self, document: DocumentInput, variables: Sequence[VariableInfo],
                               prompts: dict[uuid.UUID, PromptInfo]) -> DocumentResult:
        client = ReplayClient(self.llm, self.answers.get(document.id, {}),
                              fallback=self.fallback, resubmit=self.resubmit)
        extractor = Extractor(client, mode=self.mode, settings=self.settings)  # type: ignore[arg-type]
        result = await extractor.extract_document(document, variables, prompts)
        self.replayed.add(document.id)
        self.used |= {(document.id, key) for key in client.used}
        if client.unanswered:
            self.to_resubmit.append(document.id)
            self.reasons.update(client.unanswered)
            raise CallsStopped("resubmitted")  # the runner leaves it unwritten
        return result
