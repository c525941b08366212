"""What a run will cost before it starts: LLM calls and tokens, and prompts that cannot fit.

The estimate follows what the extractor does (``extraction/run/extractor.py``): one *unit* of
variables per call (all variables in ``per_document`` mode, one in ``per_variable``), a fixed
overhead per unit (system message, the variables' instruction blocks, the answer schema, the
answer's ``max_tokens``), and the rest of ``llm_context_tokens`` for document text; a longer
document is sent in overlapping chunks, one call each. Tokens are characters / 4, as
everywhere in extractflow. It is an upper bound: cells re-used from earlier runs cost nothing,
and the schema is estimated rather than rendered.

Used by ``run sample`` / ``run full`` (a run over ``settings.run_confirm_calls`` calls or
``settings.run_confirm_tokens`` input tokens needs ``--allow-large``) and by ``codebook apply``
(a variable whose prompt alone leaves no room for text is refused). Price estimates can be
added on top of :class:`RunEstimate` (``tokens_in`` / ``tokens_out`` and the price table).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.settings import Settings
from extraction import codebook, prompts
from extraction.models import Document, ProcessingJob, Project
from extraction.run.chunking import CHARS_PER_TOKEN
from extraction.run.results import PromptInfo, VariableInfo

__all__ = [
    "MIN_TEXT_TOKENS",
    "PromptFit",
    "RunEstimate",
    "calls_for_document",
    "estimate_job",
    "estimate_run",
    "prompt_fit",
    "unit_overhead",
]

#: Below this much room for document text a call is useless (the extractor's smallest chunk).
MIN_TEXT_TOKENS = 200
_MESSAGE_OVERHEAD = 64  # chat framing, as the extractor counts it
_SCHEMA_PER_VARIABLE = 60  # value, confidence and evidence fields of one variable


@dataclass(frozen=True)
class RunEstimate:
    """The most a run can cost (re-used cells and early stops make it less)."""

    documents: int
    calls: int
    tokens_in: int
    tokens_out: int
    largest_document_calls: int = 0

    def describe(self) -> str:
        return (f"{self.documents} documents → up to {self.calls:,} LLM calls, "
                f"~{self.tokens_in:,} input and up to {self.tokens_out:,} output tokens"
                + (f" (the longest document alone: {self.largest_document_calls:,} calls)"
                   if self.largest_document_calls > 1 else ""))


@dataclass(frozen=True)
class PromptFit:
    """Whether a unit's prompt leaves room for document text in the context window."""

    variables: tuple[str, ...]
    overhead_tokens: int
    context_tokens: int
    problems: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.context_tokens - self.overhead_tokens >= MIN_TEXT_TOKENS


def _tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def unit_overhead(variables: Sequence[VariableInfo], unit_prompts: Sequence[PromptInfo]) -> int:
    """Tokens of one call before any document text: messages, schema and the answer."""
    system = max((len(p.system_template) for p in unit_prompts), default=0)
    blocks = sum(len(p.user_template) for p in unit_prompts)
    # The schema lists a CATEGORY's categories (an enum), so they count once more.
    schema = sum(_SCHEMA_PER_VARIABLE + _tokens(sum(len(c) + 3 for c in v.categories or ()))
                 for v in variables)
    answer = sum(p.max_tokens for p in unit_prompts)
    return _tokens(system + blocks) + schema + answer + _MESSAGE_OVERHEAD


def calls_for_document(text_tokens: int, overhead: int, settings: Settings) -> int:
    """Calls one unit makes for a document: one, or one per overlapping chunk."""
    room = settings.llm_context_tokens - overhead
    if text_tokens <= room:
        return 1
    room = max(room, MIN_TEXT_TOKENS)
    overlap = min(settings.llm_chunk_overlap_tokens, room // 2)
    return 1 + math.ceil((text_tokens - room) / (room - overlap))


def _units(variables: Sequence[VariableInfo], prompt_map: dict[uuid.UUID, PromptInfo],
           mode: str) -> list[tuple[list[VariableInfo], list[PromptInfo]]]:
    if mode == "per_variable":
        return [([v], [prompt_map[v.id]]) for v in variables]
    return [(list(variables), [prompt_map[v.id] for v in variables])]


def estimate_run(variables: Sequence[VariableInfo], prompt_map: dict[uuid.UUID, PromptInfo],
                 mode: str, document_chars: Sequence[int], settings: Settings) -> RunEstimate:
    """The estimate for these documents (their text lengths) with these prompts."""
    calls = tokens_in = tokens_out = largest = 0
    units = [(unit_overhead(vs, ps), sum(p.max_tokens for p in ps))
             for vs, ps in _units(variables, prompt_map, mode)]
    for chars in document_chars:
        text = _tokens(chars)
        per_document = 0
        for overhead, answer in units:
            n = calls_for_document(text, overhead, settings)
            per_document += n
            room = max(settings.llm_context_tokens - overhead, MIN_TEXT_TOKENS)
            tokens_in += n * (overhead - answer) + min(text, n * room)
            tokens_out += n * answer
        calls += per_document
        largest = max(largest, per_document)
    return RunEstimate(documents=len(document_chars), calls=calls, tokens_in=tokens_in,
                       tokens_out=tokens_out, largest_document_calls=largest)


def _current(session: Session, project: Project) -> tuple[list[VariableInfo],
                                                          dict[uuid.UUID, PromptInfo]]:
    from extraction.run.plan import variable_info

    rows = codebook.list_variables(session, project)
    variables = [variable_info(v) for v in rows]
    return variables, {v.id: prompts.prompt_info(prompts.current_prompt(session, v))
                       for v in rows}


def estimate_job(session: Session, job: ProcessingJob, settings: Settings) -> RunEstimate:
    """The estimate of a job about to start, with the project's current prompts."""
    project = session.get(Project, job.project_id)
    assert project is not None
    variables, prompt_map = _current(session, project)
    ids = [uuid.UUID(str(i)) for i in job.document_ids or []]
    chars: list[int] = []
    for start in range(0, len(ids), 1000):
        chars += [int(n or 0) for n in session.scalars(
            select(func.coalesce(func.length(Document.text), Document.size_bytes, 0))
            .where(Document.id.in_(ids[start:start + 1000])))]
    return estimate_run(variables, prompt_map, job.mode or settings.extraction_mode, chars,
                        settings)


def prompt_fit(session: Session, project: Project, settings: Settings) -> list[PromptFit]:
    """Each variable's prompt alone, then all of them together (per_document), against the
    context window; a unit that leaves less than :data:`MIN_TEXT_TOKENS` does not fit."""
    variables, prompt_map = _current(session, project)
    fits = []
    for unit, unit_prompts in [*_units(variables, prompt_map, "per_variable"),
                               *(_units(variables, prompt_map, "per_document")
                                 if len(variables) > 1 else [])]:
        fits.append(PromptFit(variables=tuple(v.name for v in unit),
                              overhead_tokens=unit_overhead(unit, unit_prompts),
                              context_tokens=settings.llm_context_tokens))
    return fits
