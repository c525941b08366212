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
  if it had just arrived. A missing or failed answer is a failed call — or, with
  ``batch_sync_fallback``, a synchronous one; re-asks of invalid output are synchronous too,
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

    def _body(self, messages: Sequence[Mapping[str, Any]], response_model: type[Any],
              temperature: float, max_tokens: int | None, model: str | None) -> dict[str, Any]:
        _, body = self.llm.prepare(messages, response_model, temperature=temperature,
                                   max_tokens=max_tokens, model=model or self.llm.model)
        return body


class RecordingClient(_Delegate):
    """Keeps each request body in :attr:`bodies` (by call key) instead of sending it."""

    def __init__(self, llm: LLMClient) -> None:
        super().__init__(llm)
        self.bodies: dict[str, dict[str, Any]] = {}

    async def complete(self, messages: Sequence[Mapping[str, Any]], response_model: type[Any],
                       *, temperature: float = 0.0, max_tokens: int | None = None,
                       model: str | None = None) -> LLMResult[Any]:
        body = self._body(messages, response_model, temperature, max_tokens, model)
        self.bodies[call_key(body)] = body
        raise _Recorded("recorded for a batch")


class ReplayClient(_Delegate):
    """Answers each call from a batch's results (by the request body's key)."""

    def __init__(self, llm: LLMClient, answers: Mapping[str, Answer], *, fallback: bool) -> None:
        super().__init__(llm)
        self.answers = answers
        self.fallback = fallback

    async def complete(self, messages: Sequence[Mapping[str, Any]], response_model: type[Any],
                       *, temperature: float = 0.0, max_tokens: int | None = None,
                       model: str | None = None) -> LLMResult[Any]:
        body = self._body(messages, response_model, temperature, max_tokens, model)
        answer = self.answers.get(call_key(body))
        options: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens,
                                   "model": model}
        if answer is not None and answer.ok:
            completion = ChatCompletion.model_validate(answer.body)
            return await self.llm.complete(messages, response_model, answered=completion,
                                           max_reasks=None if self.fallback else 0, **options)
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
    """

    def __init__(self, llm: LLMClient, mode: str, settings: Settings,
                 answers: Mapping[uuid.UUID, Mapping[str, Answer]], *, fallback: bool) -> None:
        self.llm = llm
        self.mode = mode
        self.settings = settings
        self.answers = answers
        self.fallback = fallback

    async def extract_document(self, document: DocumentInput, variables: Sequence[VariableInfo],
                               prompts: dict[uuid.UUID, PromptInfo]) -> DocumentResult:
        client = ReplayClient(self.llm, self.answers.get(document.id, {}),
                              fallback=self.fallback)
        extractor = Extractor(client, mode=self.mode, settings=self.settings)  # type: ignore[arg-type]
        return await extractor.extract_document(document, variables, prompts)
