"""Plain values passed between the stages of a run: what goes into an LLM call, what comes out.

The extraction engine (``extraction/run/extractor.py``) works on these dataclasses, not on ORM rows,
so it can run inside async code and worker threads without a database session, and the runner
(``extraction/run/runner.py``) converts rows to and from them in batches.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from extraction.models import ExtractionStatus, VariableType

__all__ = ["alias_pairs", "VariableInfo", "PromptInfo", "DocumentInput", "CellResult", "DocumentResult"]

ExtractionModeName = Literal["per_document", "per_variable"]


@dataclass(frozen=True)
class VariableInfo:
    """A live codebook variable, as the engine needs it."""

    id: uuid.UUID
    name: str
    label: str
    type: VariableType
    instructions: str = ""
    categories: tuple[str, ...] | None = None
    #: (label, aliases) pairs, a tuple so the variable stays hashable (response models are
    #: cached by variable); read with :meth:`aliases`.
    category_aliases: tuple[tuple[str, tuple[str, ...]], ...] | None = None
    allow_other: bool = False
    multi_select: bool = False
    unit: str | None = None
    format_hint: str | None = None
    required: bool = False

    def aliases(self) -> dict[str, tuple[str, ...]]:
        """The category aliases by label (empty when the codebook declares none)."""
        return {label: tuple(words) for label, words in (self.category_aliases or ())}


def alias_pairs(aliases: Any) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    """A stored ``{label: [alias, …]}`` mapping as :attr:`VariableInfo.category_aliases`."""
    if not aliases:
        return None
    return tuple((str(k), tuple(str(w) for w in v)) for k, v in dict(aliases).items())


@dataclass(frozen=True)
class PromptInfo:
    """The prompt version a variable is extracted with (snapshotted on the job)."""

    id: uuid.UUID
    variable_id: uuid.UUID
    version: int
    system_template: str  # a complete system message
    user_template: str  # the variable's instruction block; never contains the document
    temperature: float = 0.0
    max_tokens: int = 256
    model: str | None = None
    examples: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class DocumentInput:
    """The text of one parsed document and its page map."""

    id: uuid.UUID
    filename: str
    text: str
    page_offsets: tuple[int, ...] = (0,)
    content_hash: str | None = None


@dataclass
class CellResult:
    """The answer for one document × variable: a typed value or an explicit absence."""

    variable_id: uuid.UUID
    status: ExtractionStatus
    value: Any = None
    raw_answer: str | None = None
    confidence: float | None = None
    self_confidence: float | None = None
    evidence_quote: str | None = None
    evidence_start: int | None = None
    evidence_end: int | None = None
    evidence_page: int | None = None
    grounded: bool | None = None
    #: Value–quote agreement (:mod:`extraction.run.support`): supported / unsupported /
    #: not_checkable, and why.
    support: str | None = None
    support_reason: str | None = None
    #: Second opinions (:mod:`extraction.run.second_opinion`), when the settings ask for them.
    agreement: float | None = None
    opinion: str | None = None
    opinion_reason: str | None = None
    error: str | None = None
    attempts: int = 1
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float | None = None
    prompt_id: uuid.UUID | None = None
    tokens_cached: int = 0  # of tokens_in, read from the server's prompt cache


@dataclass
class DocumentResult:
    """Everything one document's extraction produced, with its cost."""

    document_id: uuid.UUID
    cells: list[CellResult] = field(default_factory=list)
    llm_calls: int = 0
    attempts: int = 0
    reasks: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    errors: list[str] = field(default_factory=list)
    tokens_cached: int = 0
    #: Of ``llm_calls``, the extra calls of second opinions (samples and challenger).
    second_opinion_calls: int = 0
    #: Every call failed without reaching the LLM server (connection refused, DNS…).
    unreachable: bool = False
