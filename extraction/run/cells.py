"""From a call unit's answers to stored cells: grounding, support, confidence and accounting.

A *call unit* is what one LLM call asks (per_document: every variable; per_variable: one); a
long document makes it several calls, one per chunk. For each variable, each chunk's answer is
grounded in the full text (:mod:`extraction.run.grounding`), checked against its own quote
(:mod:`extraction.run.support`) and scored (:mod:`extraction.run.confidence`); the chunks'
answers are merged (:mod:`extraction.run.chunking`) into one :class:`CellResult`. Tokens are
split evenly over a unit's cells (remainder to the first ones, so sums stay exact), and
chunk calls and calls that failed count too; a cell's
``attempts`` is every HTTP request its call(s) made; ``latency_ms`` the wall time of its
call(s); ``raw_answer`` the model's JSON for that variable, before normalisation.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from config.settings import Settings
from extraction.errors import LLMError
from extraction.llm.client import LLMResult, raw_json
from extraction.llm.response_models import VariableAnswer, answers_by_variable
from extraction.models import ExtractionStatus
from extraction.run import chunking
from extraction.run.confidence import combine
from extraction.run.grounding import Grounding, ground
from extraction.run.results import (
    CellResult,
    DocumentInput,
    ExtractionModeName,
    PromptInfo,
    VariableInfo,
)
from extraction.run.support import Support, check_support

__all__ = ["Call", "Tally", "UnitOutcome", "error_text", "failed_unit", "split_evenly",
           "unit_cells"]


@dataclass
class Call:
    """One chunk's call: the result, or the (non-fatal) error it ended with."""

    chunk: chunking.Chunk
    result: LLMResult[Any] | None = None
    error: LLMError | None = None


@dataclass
class Tally:
    """What a unit's calls cost: calls, attempts, re-asks, tokens and money."""

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
class UnitOutcome:
    """One call unit's cells, what its calls cost, and the errors to report."""

    cells: list[CellResult]
    tally: Tally
    errors: list[str] = field(default_factory=list)


@dataclass
class _Pick:
    """What one chunk said about one variable (the payload of a ChunkAnswer)."""

    call: Call
    answer: VariableAnswer | None
    grounding: Grounding | None
    confidence: float | None
    support: Support | None = None



def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` shares (remainder to the first), so sums stay exact."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _pick(document: DocumentInput, variable: VariableInfo, call: Call,
          unit: list[VariableInfo], settings: Settings) -> chunking.ChunkAnswer:
    """What ``call`` said about ``variable``: grounded, checked against its quote, scored."""
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
                            text_coverage=settings.support_text_coverage,
                            date_languages=settings.support_date_languages)
    confidence = combine(answer.confidence, found=True, grounded=grounding.grounded,
                         token_probability=probability, contradicted=answer.contradicted,
                         unsupported=support.unsupported)
    position = grounding.start if grounding.grounded else call.chunk.start
    return chunking.ChunkAnswer(index, "found", confidence=confidence,
                                grounded=grounding.grounded, position=position,
                                payload=_Pick(call, answer, grounding, confidence, support))


def _raw_answer(call: Call, variable: VariableInfo, answer: VariableAnswer,
                mode: ExtractionModeName) -> str:
    """The model's JSON for ``variable``, before normalisation."""
    parsed = raw_json(call.result.raw_text) if call.result is not None else None
    if mode == "per_document":
        parsed = parsed.get(variable.name) if isinstance(parsed, dict) else None
    if parsed is None:
        return answer.model_dump_json()
    return json.dumps(parsed, ensure_ascii=False)


def unit_cells(
    document: DocumentInput,
    unit: list[VariableInfo],
    unit_prompts: list[PromptInfo],
    calls: list[Call],
    tally: Tally,
    started: float,
    notes: list[str],
    *,
    mode: ExtractionModeName,
    settings: Settings,
) -> UnitOutcome:
    """Every variable's cell of one call unit, from its calls (merged over chunks)."""
    latency = (time.perf_counter() - started) * 1000
    tokens_in = split_evenly(tally.tokens_in, len(unit))
    tokens_out = split_evenly(tally.tokens_out, len(unit))
    tokens_cached = split_evenly(tally.tokens_cached, len(unit))
    total = len(calls)
    errors: list[str] = []
    failed_calls = [c for c in calls if c.error is not None]
    cells: list[CellResult] = []
    failed_names: list[str] = []
    for i, (variable, prompt) in enumerate(zip(unit, unit_prompts)):
        merged = chunking.merge_answers([_pick(document, variable, c, unit, settings)
                                         for c in calls])
        pick: _Pick = merged.payload
        cell = CellResult(
            variable_id=variable.id, status=ExtractionStatus.FAILED, attempts=tally.attempts,
            tokens_in=tokens_in[i], tokens_out=tokens_out[i], latency_ms=latency,
            prompt_id=prompt.id, tokens_cached=tokens_cached[i],
        )
        if merged.status == "failed":
            cell.error = error_text(pick.call, total)
            failed_names.append(variable.name)
        else:
            answer = pick.answer
            assert answer is not None
            cell.raw_answer = _raw_answer(pick.call, variable, answer, mode)
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
        errors.append(f"{', '.join(failed_names)}: {error_text(first_failed, total)}")
    elif failed_calls:
        for c in failed_calls:
            errors.append(f"{', '.join(v.name for v in unit)}: {error_text(c, total)} "
                          "(answers from the other parts were used)")
    errors.extend(f"{', '.join(v.name for v in unit)}: {note}" for note in notes
                  if failed_names or failed_calls)
    return UnitOutcome(cells, tally, errors)


def failed_unit(
    unit: list[VariableInfo],
    unit_prompts: list[PromptInfo],
    message: str,
    tally: Tally,
    started: float,
    notes: list[str],
) -> UnitOutcome:
    """Failed cells for every variable of a unit that could not be asked (``message``)."""
    latency = (time.perf_counter() - started) * 1000
    tokens_in = split_evenly(tally.tokens_in, len(unit))
    tokens_out = split_evenly(tally.tokens_out, len(unit))
    cells = [
        CellResult(variable_id=v.id, status=ExtractionStatus.FAILED, error=message,
                   attempts=tally.attempts, tokens_in=tokens_in[i], tokens_out=tokens_out[i],
                   latency_ms=latency, prompt_id=p.id)
        for i, (v, p) in enumerate(zip(unit, unit_prompts))
    ]
    names = ", ".join(v.name for v in unit)
    return UnitOutcome(cells, tally, [f"{names}: {message}",
                                       *(f"{names}: {n}" for n in notes)])



def error_text(call: Call, total: int) -> str:
    """Why ``call`` gave no answer, naming its part when the document was chunked."""
    error = call.error
    text = error.detail if error is not None else "no answer"
    if total > 1:
        text = f"part {call.chunk.index + 1} of {total}: {text}"
    return text
