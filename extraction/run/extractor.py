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

**Accounting** (tokens split over a call's cells, attempts, latency, the raw answer) and the
turning of answers into cells: :mod:`extraction.run.cells`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from dataclasses import dataclass
from collections.abc import Awaitable, Mapping, Sequence
from typing import Literal, TypeVar

from pydantic import BaseModel

from config.settings import Settings, get_settings
from extraction.errors import LLMError, is_fatal
from extraction.llm.client import LLMClient
from extraction.llm.errors import ContextLengthError
from extraction.llm.response_models import response_model
from extraction.prompts.templates import MAX_MAX_TOKENS, wrap_document
from extraction.run import chunking
from extraction.run.cells import Call, Tally, UnitOutcome, failed_unit, unit_cells
from extraction.run.results import (
    CellResult,
    DocumentInput,
    DocumentResult,
    ExtractionModeName,
    PromptInfo,
    VariableInfo,
)
from extraction.run.second_opinion import SecondOpinions

__all__ = ["MAX_RECHUNKS", "MIN_CHUNK_TOKENS", "Extractor", "UnitLayout", "build_messages",
           "unit_layout"]

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



@dataclass(frozen=True)
class UnitLayout:
    """What every call of one unit (its variables, their prompts) sends, before the text.

    The estimate before a run (:mod:`extraction.run.forecast`) renders calls with it too,
    so what it counts is what the extractor sends.
    """

    system: str
    blocks: tuple[str, ...]
    response_model: type[BaseModel]
    max_tokens: int
    temperature: float
    model: str | None
    #: Tokens of a call before any document text: prompt, schema, answer, chat framing.
    overhead: int
    context_tokens: int
    overlap_tokens: int
    document_first: bool

    def chunk_tokens(self, text: str) -> int | None:
        """The chunk size ``text`` is split at, or None when it fits one call."""
        budget = self.context_tokens - self.overhead
        return budget if chunking.estimate_tokens(text) > budget else None

    def chunks(self, text: str) -> list[chunking.Chunk]:
        """The pieces of ``text`` the calls carry (none when the prompt leaves no room)."""
        size = self.chunk_tokens(text)
        if size is None:
            return [chunking.Chunk(0, 0, len(text), text)]
        if size < MIN_CHUNK_TOKENS:
            return []
        return chunking.split_text(text, size, self.overlap_tokens)

    def messages(self, chunk: chunking.Chunk, total: int) -> list[dict[str, str]]:
        return build_messages(self.system, self.blocks, chunk.text,
                              part=(chunk.index + 1, total) if total > 1 else None,
                              document_first=self.document_first)


def unit_layout(unit: Sequence[VariableInfo], unit_prompts: Sequence[PromptInfo],
                mode: str, instructor_mode: str, settings: Settings, *,
                system: str | None = None) -> UnitLayout:
    """The layout of one unit's calls in ``mode`` through a client in ``instructor_mode``."""
    model = response_model(list(unit), mode)  # type: ignore[arg-type]
    blocks = tuple(p.user_template for p in unit_prompts)
    system = unit_prompts[0].system_template if system is None else system
    max_tokens = min(MAX_MAX_TOKENS, sum(p.max_tokens for p in unit_prompts))
    # instructor writes the schema into the prompt indented in json/md_json modes; tools
    # and json_schema send it compactly (some servers do not even render it as tokens).
    indent = 2 if instructor_mode in ("json", "md_json") else None
    schema = _schema_text(model, indent)
    overhead = (chunking.estimate_tokens(system + "".join(blocks) + schema)
                + max_tokens + _MESSAGE_OVERHEAD_TOKENS)
    return UnitLayout(
        system=system, blocks=blocks, response_model=model, max_tokens=max_tokens,
        temperature=min(p.temperature for p in unit_prompts),
        model=unit_prompts[0].model or None, overhead=overhead,
        context_tokens=settings.llm_context_tokens,
        overlap_tokens=settings.llm_chunk_overlap_tokens,
        document_first=mode == "per_variable")


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
    ) -> UnitOutcome:
        started = time.perf_counter()
        unit_prompts = [prompts[v.id] for v in unit]
        system = self._system(unit, prompts)
        layout = unit_layout(unit, unit_prompts, self.mode,
                             getattr(self.client, "mode_name", "tools"), self.settings,
                             system=system)
        blocks, model, max_tokens = layout.blocks, layout.response_model, layout.max_tokens
        temperature, llm_model, overhead = layout.temperature, layout.model, layout.overhead
        text = document.text
        chunk_tokens = layout.chunk_tokens(text)
        tally = Tally()
        notes: list[str] = []

        async def call(chunk: chunking.Chunk, total: int) -> Call:
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
                return Call(chunk, error=error)
            return Call(chunk, result=result)

        rounds = 0
        while True:
            if chunk_tokens is not None and chunk_tokens < MIN_CHUNK_TOKENS:
                message = (f"the document (~{chunking.estimate_tokens(text)} tokens) does not fit "
                           f"the token budget: the prompt and answer already take ~{overhead} "
                           f"of llm_context_tokens={self.settings.llm_context_tokens}; raise "
                           "EXTRACTFLOW_LLM_CONTEXT_TOKENS, or use per_variable mode")
                return failed_unit(unit, unit_prompts, message, tally, started, notes)
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
                self._account(tally, Call(calls[0].chunk, error=error), llm_model)
            tally.opinion_calls += opinions.calls
        outcome = unit_cells(document, unit, unit_prompts, calls, tally, started, notes,
                             mode=self.mode, settings=self.settings)
        if opinions is not None:
            self.opinions.apply(outcome.cells, unit, opinions)
        return outcome

    def _account(self, tally: Tally, call: Call, model: str | None) -> None:
        if call.result is not None:
            tally.add_result(call.result)
        elif call.error is not None:
            name = model or self.client.model
            cost = self.client.cost(name, int(call.error.extra.get("tokens_in") or 0),
                                    int(call.error.extra.get("tokens_out") or 0),
                                    int(call.error.extra.get("tokens_cached") or 0))
            tally.add_error(call.error, cost)

    # ------------------------------------------------------------------ cells
