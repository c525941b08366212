"""The extraction engine: one document + its variables + their prompts → a DocumentResult.

For each call the messages are: **system** = the prompt's system message (in per_document mode
the first variable's; they are generated identically, a difference is logged), **user** = the
variables' instruction blocks in codebook order, then the document text between ``<document>``
and ``</document>`` (any such tag inside the text defused, see
:func:`extraction.prompts.wrap_document`). What the calls share comes first, so prompt caches
(llama.cpp's, providers') reuse it: per_document calls share the system message and the
blocks, so the document comes last; per_variable calls of one document share the document, so
it comes before the variable's block. per_document makes one call per document;
per_variable makes one call per variable, all at once (``asyncio.gather``; the client's limiter
caps how many are in flight).

Answers are normalised by the response model (:mod:`extraction.llm.response_models`), quotes are
grounded in the full document text (:mod:`extraction.run.grounding`; offsets are relative to the
whole document even when it was sent in chunks), each value is checked against its own quote
(:mod:`extraction.run.support`), and confidence is combined (:mod:`extraction.run.confidence`);
when the settings ask for second opinions, the call is asked again or of a challenger model
and the agreement scales the confidence (:mod:`extraction.run.second_opinion`).

**Long documents.** A call's budget is ``llm_context_tokens`` minus the prompt (system message,
blocks, the answer schema) and the answer's ``max_tokens``. A document whose estimated tokens
exceed it is split into overlapping chunks (``llm_chunk_overlap_tokens``), each chunk is asked
the same question, and answers are merged per variable (rule in :mod:`extraction.run.chunking`). If
the server still says the context is too long, the chunks are made smaller — to fit the window
the server states, else half the size — at most :data:`MAX_RECHUNKS` times.

**Failures.** A failure confined to this document (retries exhausted, invalid output after the
re-asks, still too long) becomes cells with status ``failed`` whose ``error`` names the
provider's message and the attempts, plus an entry in ``DocumentResult.errors``. Failures that
would fail every document (credentials, unknown model, unusable configuration) raise
:class:`~extraction.errors.LLMError` with ``fatal`` set (see
:func:`~extraction.errors.is_fatal`).

**Accounting.** Tokens are per call, split evenly over the call's cells (remainder to the
first ones, so sums stay exact); chunk calls and calls that failed count too. A cell's
``attempts`` is every HTTP request its call(s) made; ``latency_ms`` the wall time of its
call(s); ``raw_answer`` the model's JSON for that variable, before normalisation.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from config.settings import Settings, get_settings
from extraction.errors import LLMError, is_fatal
from extraction.llm.client import LLMClient, LLMResult, raw_json
from extraction.llm.errors import ContextLengthError
from extraction.llm.response_models import VariableAnswer, answers_by_variable, response_model
from extraction.models import ExtractionStatus
from extraction.prompts.templates import MAX_MAX_TOKENS, wrap_document
from extraction.run import chunking
from extraction.run.confidence import combine
from extraction.run.grounding import Grounding, ground
from extraction.run.results import (
    CellResult,
    DocumentInput,
    DocumentResult,
    ExtractionModeName,
    PromptInfo,
    VariableInfo,
)
from extraction.run.second_opinion import SecondOpinions
from extraction.run.support import Support, check_support

__all__ = ["MAX_RECHUNKS", "MIN_CHUNK_TOKENS", "Extractor", "build_messages"]

log = logging.getLogger(__name__)

#: Smallest document share of a call worth sending; below it the prompt leaves no room.
MIN_CHUNK_TOKENS = 200
#: How often chunks are made smaller when the server still reports the context as too long.
MAX_RECHUNKS = 3
#: Tokens a chat template adds around messages and tools (roles, separators), estimated.
_MESSAGE_OVERHEAD_TOKENS = 64

_T = TypeVar("_T")


def build_messages(
    system: str, blocks: Sequence[str], text: str, *,
    part: tuple[int, int] | None = None,
    document_first: bool = False,
) -> list[dict[str, str]]:
    """The chat messages of one call: system message, then blocks and the delimited text.

    Args:
        system: The complete system message.
        blocks: The instruction blocks of the call's variables, in codebook order.
        text: The document text (or one chunk of it).
        part: ``(n, total)`` when ``text`` is the n-th of ``total`` chunks.
        document_first: The document before the blocks (per_variable: the calls of one
            document then share everything up to the variable's block).
    """
    body = "\n\n".join(b.strip() for b in blocks)
    where = "above" if document_first else "below"
    if part is not None and part[1] > 1:
        lead = (f"The document is long: {where} is part {part[0]} of {part[1]}. Answer from "
                "this part only; answer null where this part does not say.")
    elif len(blocks) > 1:
        lead = f"Answer every variable {'below' if document_first else 'above'} from the " \
               f"document {where}."
    else:
        lead = f"Answer the variable {'below' if document_first else 'above'} from the " \
               f"document {where}."
    if document_first:
        content = f"{wrap_document(text)}\n\n{lead}\n\n{body}"
    else:
        content = f"{body}\n\n{lead}\n{wrap_document(text)}"
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": content},
    ]


@dataclass
class _Call:
    """One chunk's call: the result, or the (non-fatal) error it ended with."""

    chunk: chunking.Chunk
    result: LLMResult[Any] | None = None
    error: LLMError | None = None


@dataclass
class _Tally:
    calls: int = 0
    answered: int = 0  # calls the server answered (whatever the answer)
    unreachable: int = 0  # calls that never reached the server
    attempts: int = 0
    reasks: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0
    cost_usd: float | None = None
    opinion_calls: int = 0  # of ``calls``, second opinions

    def add_result(self, result: LLMResult[Any]) -> None:
        self.calls += 1
        self.answered += 1
        self.attempts += result.attempts
        self.reasks += result.reasks
        self.tokens_in += result.tokens_in
        self.tokens_out += result.tokens_out
        self.tokens_cached += result.tokens_cached
        if result.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + result.cost_usd

    def add_error(self, error: LLMError, cost: float | None) -> None:
        self.calls += 1
        if error.extra.get("unreachable"):
            self.unreachable += 1
        else:
            self.answered += 1
        self.attempts += int(error.extra.get("attempts") or error.attempts or 0)
        self.reasks += int(error.extra.get("reasks") or 0)
        self.tokens_in += int(error.extra.get("tokens_in") or 0)
        self.tokens_out += int(error.extra.get("tokens_out") or 0)
        self.tokens_cached += int(error.extra.get("tokens_cached") or 0)
        if cost is not None:
            self.cost_usd = (self.cost_usd or 0.0) + cost


@dataclass
class _UnitOutcome:
    cells: list[CellResult]
    tally: _Tally
    errors: list[str] = field(default_factory=list)


@dataclass
class _Pick:
    """What one chunk said about one variable (the payload of a ChunkAnswer)."""

    call: _Call
    answer: VariableAnswer | None
    grounding: Grounding | None
    confidence: float | None
    support: Support | None = None


async def _all_or_raise(awaitables: Sequence[Awaitable[_T]]) -> list[_T]:
    """Run concurrently; on the first exception cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


@functools.lru_cache(maxsize=256)
def _schema_text(model: type[BaseModel], indent: int | None) -> str:
    """The response model's JSON schema as text (for the token budget), made once per model:
    pydantic rebuilds a schema on every ``model_json_schema()`` call."""
    return json.dumps(model.model_json_schema(), indent=indent)


def _split_evenly(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class Extractor:
    """Extracts one document's variables through an :class:`~extraction.llm.client.LLMClient`."""

    def __init__(
        self,
        client: LLMClient,
        *,
        mode: ExtractionModeName = "per_document",
        settings: Settings | None = None,
        opinions: SecondOpinions | None = None,
    ) -> None:
        if mode not in ("per_document", "per_variable"):
            raise LLMError(f"unknown extraction mode {mode!r}; use per_document or "
                           "per_variable", fatal=True)
        self.client = client
        self.mode: Literal["per_document", "per_variable"] = mode
        self.settings = settings or get_settings()
        #: Optional extra calls per call (off by default): :mod:`extraction.run.second_opinion`.
        self.opinions = opinions or SecondOpinions.from_settings(self.settings, client)
        self._warned_systems: set[uuid.UUID] = set()

    async def extract_document(
        self,
        document: DocumentInput,
        variables: Sequence[VariableInfo],
        prompts: Mapping[uuid.UUID, PromptInfo],
    ) -> DocumentResult:
        """Every variable's cell for ``document``; failures confined to it come back as cells.

        Raises:
            LLMError: ``fatal`` for failures that would fail every document
                (bad credentials, unknown model, structured output unsupported, a variable
                without a prompt).
        """
        result = DocumentResult(document_id=document.id)
        if not variables:
            return result
        missing = [v.name for v in variables if v.id not in prompts]
        if missing:
            raise LLMError(f"no prompt for variable(s) {', '.join(missing)}: generate prompts "
                           "before extracting", field=missing[0], fatal=True)
        if self.mode == "per_document":
            units: list[list[VariableInfo]] = [list(variables)]
        else:
            units = [[v] for v in variables]
        outcomes = await _all_or_raise([self._extract_unit(document, u, prompts) for u in units])
        by_id: dict[uuid.UUID, CellResult] = {}
        answered = unreachable = 0
        for outcome in outcomes:
            for cell in outcome.cells:
                by_id[cell.variable_id] = cell
            tally = outcome.tally
            answered += tally.answered
            unreachable += tally.unreachable
            result.llm_calls += tally.calls
            result.attempts += tally.attempts
            result.reasks += tally.reasks
            result.tokens_in += tally.tokens_in
            result.tokens_out += tally.tokens_out
            result.tokens_cached += tally.tokens_cached
            result.second_opinion_calls += tally.opinion_calls
            if tally.cost_usd is not None:
                result.cost_usd = (result.cost_usd or 0.0) + tally.cost_usd
            result.errors.extend(outcome.errors)
        result.cells = [by_id[v.id] for v in variables]
        result.unreachable = unreachable > 0 and answered == 0
        return result

    # ------------------------------------------------------------------ one call unit

    def _system(self, unit: Sequence[VariableInfo], prompts: Mapping[uuid.UUID, PromptInfo]) -> str:
        system = prompts[unit[0].id].system_template
        differing = [v.name for v in unit[1:] if prompts[v.id].system_template != system]
        if differing and prompts[unit[0].id].id not in self._warned_systems:
            self._warned_systems.add(prompts[unit[0].id].id)
            log.warning("system messages differ between variables (%s); using the one of %s",
                        ", ".join(differing), unit[0].name)
        return system

    async def _extract_unit(
        self,
        document: DocumentInput,
        unit: list[VariableInfo],
        prompts: Mapping[uuid.UUID, PromptInfo],
    ) -> _UnitOutcome:
        started = time.perf_counter()
        unit_prompts = [prompts[v.id] for v in unit]
        system = self._system(unit, prompts)
        blocks = [p.user_template for p in unit_prompts]
        model = response_model(unit, self.mode)
        max_tokens = min(MAX_MAX_TOKENS, sum(p.max_tokens for p in unit_prompts))
        temperature = min(p.temperature for p in unit_prompts)
        llm_model = unit_prompts[0].model or None
        # instructor writes the schema into the prompt indented in json/md_json modes; tools
        # and json_schema send it compactly (some servers do not even render it as tokens).
        indent = 2 if getattr(self.client, "mode_name", "tools") in ("json", "md_json") else None
        schema = _schema_text(model, indent)
        overhead = (chunking.estimate_tokens(system + "".join(blocks) + schema)
                    + max_tokens + _MESSAGE_OVERHEAD_TOKENS)
        budget = self.settings.llm_context_tokens - overhead
        text = document.text
        chunk_tokens = budget if chunking.estimate_tokens(text) > budget else None
        tally = _Tally()
        notes: list[str] = []

        async def call(chunk: chunking.Chunk, total: int) -> _Call:
            messages = build_messages(system, blocks, chunk.text,
                                      part=(chunk.index + 1, total) if total > 1 else None,
                                      document_first=self.mode == "per_variable")
            try:
                result = await self.client.complete(
                    messages, model, temperature=temperature, max_tokens=max_tokens,
                    model=llm_model)
            except LLMError as error:
                if is_fatal(error):
                    raise
                return _Call(chunk, error=error)
            return _Call(chunk, result=result)

        rounds = 0
        while True:
            if chunk_tokens is not None and chunk_tokens < MIN_CHUNK_TOKENS:
                message = (f"the document (~{chunking.estimate_tokens(text)} tokens) does not fit "
                           f"the token budget: the prompt and answer already take ~{overhead} "
                           f"of llm_context_tokens={self.settings.llm_context_tokens}; raise "
                           "EXTRACTFLOW_LLM_CONTEXT_TOKENS, or use per_variable mode")
                return self._failed_unit(unit, unit_prompts, message, tally, started, notes)
            chunks = (chunking.split_text(text, chunk_tokens,
                                          self.settings.llm_chunk_overlap_tokens)
                      if chunk_tokens is not None else [chunking.Chunk(0, 0, len(text), text)])
            calls = await _all_or_raise([call(c, len(chunks)) for c in chunks])
            too_long = [c.error for c in calls if isinstance(c.error, ContextLengthError)]
            if too_long and rounds < MAX_RECHUNKS:
                for c in calls:
                    self._account(tally, c, llm_model)
                rounds += 1
                window = next((e.window for e in too_long if e.window), None)
                current = chunk_tokens or chunking.estimate_tokens(text)
                target = window - overhead if window else 0
                chunk_tokens = target if 0 < target < current else current // 2
                notes.append(f"context too long for the server ({too_long[0].detail}); "
                             f"retried in chunks of ~{chunk_tokens} tokens")
                log.info("%s: %s", document.filename, notes[-1])
                continue
            break
        for c in calls:
            self._account(tally, c, llm_model)
        opinions = None
        if self.opinions.enabled and len(calls) == 1 and calls[0].result is not None:
            opinions = await self.opinions.ask(
                build_messages(system, blocks, text,
                               document_first=self.mode == "per_variable"),
                model, unit, temperature=temperature, max_tokens=max_tokens, model=llm_model)
            for answered in opinions.results:
                tally.add_result(answered)
            for error in opinions.errors:
                self._account(tally, _Call(calls[0].chunk, error=error), llm_model)
            tally.opinion_calls += opinions.calls
        outcome = self._cells(document, unit, unit_prompts, calls, tally, started, notes)
        if opinions is not None:
            self.opinions.apply(outcome.cells, unit, opinions)
        return outcome

    def _account(self, tally: _Tally, call: _Call, model: str | None) -> None:
        if call.result is not None:
            tally.add_result(call.result)
        elif call.error is not None:
            name = model or self.client.model
            cost = self.client.cost(name, int(call.error.extra.get("tokens_in") or 0),
                                    int(call.error.extra.get("tokens_out") or 0))
            tally.add_error(call.error, cost)

    # ------------------------------------------------------------------ cells

    def _pick(self, document: DocumentInput, variable: VariableInfo, call: _Call,
              unit: list[VariableInfo]) -> chunking.ChunkAnswer:
        index = call.chunk.index
        if call.result is None:
            return chunking.ChunkAnswer(index, "failed", payload=_Pick(call, None, None, None))
        answer = answers_by_variable(call.result.output, unit)[variable.name]
        probability = call.result.token_probability
        if not answer.found:
            confidence = combine(answer.confidence, found=False, grounded=None,
                                 token_probability=probability)
            return chunking.ChunkAnswer(index, "not_found", confidence=confidence,
                                        payload=_Pick(call, answer, None, confidence))
        grounding = ground(answer.evidence, document.text, document.page_offsets,
                           window=(call.chunk.start, call.chunk.end))
        support = check_support(variable, answer.value, answer.evidence,
                                aliases=variable.aliases(),
                                text_coverage=self.settings.support_text_coverage,
                                date_languages=self.settings.support_date_languages)
        confidence = combine(answer.confidence, found=True, grounded=grounding.grounded,
                             token_probability=probability, contradicted=answer.contradicted,
                             unsupported=support.unsupported)
        position = grounding.start if grounding.grounded else call.chunk.start
        return chunking.ChunkAnswer(index, "found", confidence=confidence,
                                    grounded=grounding.grounded, position=position,
                                    payload=_Pick(call, answer, grounding, confidence, support))

    def _raw_answer(self, call: _Call, variable: VariableInfo, answer: VariableAnswer) -> str:
        parsed = raw_json(call.result.raw_text) if call.result is not None else None
        if self.mode == "per_document":
            parsed = parsed.get(variable.name) if isinstance(parsed, dict) else None
        if parsed is None:
            return answer.model_dump_json()
        return json.dumps(parsed, ensure_ascii=False)

    def _cells(
        self,
        document: DocumentInput,
        unit: list[VariableInfo],
        unit_prompts: list[PromptInfo],
        calls: list[_Call],
        tally: _Tally,
        started: float,
        notes: list[str],
    ) -> _UnitOutcome:
        latency = (time.perf_counter() - started) * 1000
        tokens_in = _split_evenly(tally.tokens_in, len(unit))
        tokens_out = _split_evenly(tally.tokens_out, len(unit))
        tokens_cached = _split_evenly(tally.tokens_cached, len(unit))
        total = len(calls)
        errors: list[str] = []
        failed_calls = [c for c in calls if c.error is not None]
        cells: list[CellResult] = []
        failed_names: list[str] = []
        for i, (variable, prompt) in enumerate(zip(unit, unit_prompts)):
            merged = chunking.merge_answers([self._pick(document, variable, c, unit)
                                             for c in calls])
            pick: _Pick = merged.payload
            cell = CellResult(
                variable_id=variable.id, status=ExtractionStatus.FAILED, attempts=tally.attempts,
                tokens_in=tokens_in[i], tokens_out=tokens_out[i], latency_ms=latency,
                prompt_id=prompt.id, tokens_cached=tokens_cached[i],
            )
            if merged.status == "failed":
                cell.error = _error_text(pick.call, total)
                failed_names.append(variable.name)
            else:
                answer = pick.answer
                assert answer is not None
                cell.raw_answer = self._raw_answer(pick.call, variable, answer)
                cell.self_confidence = answer.confidence
                cell.confidence = pick.confidence
                if merged.status == "found":
                    grounding = pick.grounding or Grounding(False)
                    cell.status = ExtractionStatus.OK
                    cell.value = answer.value
                    cell.evidence_quote = answer.evidence
                    cell.grounded = grounding.grounded
                    cell.evidence_start = grounding.start
                    cell.evidence_end = grounding.end
                    cell.evidence_page = grounding.page
                    if pick.support is not None:
                        cell.support, cell.support_reason = pick.support.status, pick.support.reason
                else:
                    cell.status = ExtractionStatus.NOT_FOUND
            cells.append(cell)
        if failed_names:
            first_failed = next(c for c in calls if c.error is not None)
            errors.append(f"{', '.join(failed_names)}: {_error_text(first_failed, total)}")
        elif failed_calls:
            for c in failed_calls:
                errors.append(f"{', '.join(v.name for v in unit)}: {_error_text(c, total)} "
                              "(answers from the other parts were used)")
        errors.extend(f"{', '.join(v.name for v in unit)}: {note}" for note in notes
                      if failed_names or failed_calls)
        return _UnitOutcome(cells, tally, errors)

    def _failed_unit(
        self,
        unit: list[VariableInfo],
        unit_prompts: list[PromptInfo],
        message: str,
        tally: _Tally,
        started: float,
        notes: list[str],
    ) -> _UnitOutcome:
        latency = (time.perf_counter() - started) * 1000
        tokens_in = _split_evenly(tally.tokens_in, len(unit))
        tokens_out = _split_evenly(tally.tokens_out, len(unit))
        cells = [
            CellResult(variable_id=v.id, status=ExtractionStatus.FAILED, error=message,
                       attempts=tally.attempts, tokens_in=tokens_in[i], tokens_out=tokens_out[i],
                       latency_ms=latency, prompt_id=p.id)
            for i, (v, p) in enumerate(zip(unit, unit_prompts))
        ]
        names = ", ".join(v.name for v in unit)
        return _UnitOutcome(cells, tally, [f"{names}: {message}",
                                           *(f"{names}: {n}" for n in notes)])


def _error_text(call: _Call, total: int) -> str:
    error = call.error
    text = error.detail if error is not None else "no answer"
    if total > 1:
        text = f"part {call.chunk.index + 1} of {total}: {text}"
    return text
