"""Second opinions: ask again (self-consistency) or ask another model (a challenger), optional.

Why: the value–quote check (:mod:`extraction.run.support`) catches a wrong value beside a
quote that shows the right one, but not a wrong value whose quote was chosen to fit it, nor a
right-looking inference. Asking again costs calls but needs no rule: a model that is unsure
tends to answer differently when sampled, and a second model is wrong in other places than the
first. Both are **off by default** (settings ``second_opinion_samples`` and
``challenger_model``); each extra call goes through the same LLM client as the first (its
limiter, retries and re-asks), is counted in the job's ``llm_calls`` and tokens, and logged per
written batch (event ``second_opinion_calls``). :func:`extra_calls_per_document` says how many
calls the settings add, for the cost estimate.

What the cell keeps:

* **The value stays the first answer** (the one at the prompt's temperature, normally 0), not
  the majority of the samples. The first answer is the reproducible one (a re-run, and the
  re-use of cells across runs, give the same value), and its quote has been grounded and
  checked; a majority value would need its own quote, grounding and check, and with two or
  three samples a "majority" is mostly the first answer anyway. The samples only say how much
  to trust it.
* **Self-consistency** — ``k`` extra answers at ``second_opinion_temperature`` (each with its
  own ``seed``, so servers that honour seeds give different but repeatable samples). The
  factor is the share of all answers that agree with the first, the first included:
  ``(1 + agreeing) / (1 + answered)`` — 1.0 when every sample agrees, ``1/(k+1)`` when none
  does. Never 0: a model can be unstable on a right answer.
* **Challenger** — the same messages to ``challenger_model`` (the run's endpoint, or its own
  ``challenger_base_url``) at the prompt's temperature. Disagreement multiplies the confidence
  by ``challenger_disagreement_factor`` (default :data:`DISAGREEMENT_FACTOR`, 0.5, the same
  step as the other checks), or with ``challenger_on_disagreement = "null"`` stores no value:
  status ``not_found``, ``opinion = "disputed"`` and the two answers in ``opinion_reason``
  (a null is better than a wrong value; a reviewer sees both answers; the confidence takes
  the factor too, so the disputed cell ranks early for review). A ``not_found`` first
  answer is never "disputed" (it is already null); its confidence takes the factor.
* Stored per cell: ``agreement`` (share of the second answers — samples and challenger — that
  agreed with the first), ``opinion`` (``agreed`` / ``split`` / ``disputed``) and
  ``opinion_reason`` (what they answered). Calls that failed are not counted as votes.

Answers agree by type: numbers within a relative 1e-6; dates at the coarser precision of the
two (``2021-03`` and ``2021-03-15`` agree); categories case-folded, multi-select as sets;
booleans exactly; texts when their normalised token-F1 is at least :data:`TEXT_AGREEMENT`
(samples rephrase). "Not stated" agrees only with "not stated".

A document sent in several parts (longer than the token budget) gets no second opinion: the
calls would multiply by the parts, and the parts' answers are merged by rules of their own.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from config.settings import Settings
from extraction.errors import LLMError, is_fatal
from extraction.models import ExtractionStatus, VariableType
from extraction.run.results import CellResult, VariableInfo

__all__ = [
    "DISAGREEMENT_FACTOR",
    "TEXT_AGREEMENT",
    "OpinionPolicy",
    "Opinions",
    "SecondOpinions",
    "extra_calls_per_document",
    "same_answer",
]

#: What a challenger's disagreement multiplies the confidence by (setting
#: ``challenger_disagreement_factor``).
DISAGREEMENT_FACTOR = 0.5
#: Token-F1 at or above which two TEXT answers count as the same answer.
TEXT_AGREEMENT = 0.8

AGREED, SPLIT, DISPUTED = "agreed", "split", "disputed"


@dataclass(frozen=True)
class OpinionPolicy:
    """What the settings ask for (all off by default)."""

    samples: int = 0
    temperature: float = 0.7
    challenger_model: str | None = None
    on_disagreement: Literal["lower", "null"] = "lower"
    disagreement_factor: float = DISAGREEMENT_FACTOR

    @classmethod
    def from_settings(cls, settings: Settings) -> OpinionPolicy:
        return cls(samples=settings.second_opinion_samples,
                   temperature=settings.second_opinion_temperature,
                   challenger_model=settings.challenger_model or None,
                   on_disagreement=settings.challenger_on_disagreement,
                   disagreement_factor=settings.challenger_disagreement_factor)

    @property
    def enabled(self) -> bool:
        return self.samples > 0 or self.challenger_model is not None

    @property
    def calls_per_call(self) -> int:
        """Extra calls for each call the run makes (documents in one part)."""
        return self.samples + (1 if self.challenger_model else 0)


def extra_calls_per_document(settings: Settings, mode: str, variables: int) -> int:
    """Extra LLM calls per document that the second-opinion settings imply.

    One call per document in per_document mode, one per variable in per_variable mode, each
    asked again ``second_opinion_samples`` times and once more of the challenger. Documents
    longer than the token budget get none (see the module docstring), so for a corpus of
    long documents this is an upper bound.
    """
    units = 1 if mode == "per_document" else max(1, variables)
    return units * OpinionPolicy.from_settings(settings).calls_per_call


# ------------------------------------------------------------------ agreement

_PUNCT = re.compile(r"[^\w\s]|_")


def _tokens(value: Any) -> list[str]:
    return _PUNCT.sub(" ", str(value).casefold()).split()


def _token_f1(a: Any, b: Any) -> float:
    x, y = _tokens(a), _tokens(b)
    if not x or not y:
        return float(x == y)
    overlap = sum((Counter(x) & Counter(y)).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / len(y), overlap / len(x)
    return 2 * precision * recall / (precision + recall)


def _fold(value: Any) -> Any:
    if isinstance(value, (list, tuple, set, frozenset)):
        return frozenset(str(v).casefold().strip() for v in value)
    return str(value).casefold().strip()


def same_answer(kind: VariableType, a: Any, b: Any) -> bool:
    """Whether two normalised answers of a variable of type ``kind`` are the same answer."""
    if a is None or b is None:
        return a is None and b is None
    if kind is VariableType.NUMBER:
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
        except (TypeError, ValueError):
            return str(a) == str(b)
    if kind is VariableType.DATE:
        x, y = str(a)[:10].split("-"), str(b)[:10].split("-")
        depth = min(len(x), len(y))
        return x[:depth] == y[:depth]
    if kind is VariableType.CATEGORY:
        return _fold(a) == _fold(b)
    if kind is VariableType.BOOLEAN:
        return a is b or a == b
    return _token_f1(a, b) >= TEXT_AGREEMENT


def _show(value: Any) -> str:
    if value is None:
        return "not stated"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


# ------------------------------------------------------------------ asking


@dataclass
class Opinions:
    """The second answers to one call: per variable name, the samples' and the challenger's
    values (None: not stated), and every call's result or error for accounting."""

    samples: dict[str, list[Any]] = field(default_factory=dict)
    challenger: dict[str, Any] = field(default_factory=dict)
    results: list[Any] = field(default_factory=list)  # LLMResult of each answered call
    errors: list[LLMError] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.results) + len(self.errors)


def _values(output: Any, unit: Sequence[VariableInfo]) -> dict[str, Any]:
    from extraction.llm.response_models import answers_by_variable

    answers = answers_by_variable(output, unit)
    return {name: (a.value if a.found else None) for name, a in answers.items()}


class SecondOpinions:
    """Asks for the second opinions of one call and folds them into its cells.

    Args:
        policy: What to ask for.
        client: The run's LLM client (samples; the challenger when it shares the endpoint).
        challenger_client: A client of the challenger's own endpoint, if it has one.
    """

    def __init__(self, policy: OpinionPolicy, client: Any, challenger_client: Any = None
                 ) -> None:
        self.policy = policy
        self.client = client
        self.challenger_client = challenger_client or client

    @classmethod
    def from_settings(cls, settings: Settings, client: Any) -> SecondOpinions:
        """The second opinions the settings ask for; a challenger on its own endpoint gets its
        own client behind the run's limiter, closed with the run's client."""
        policy = OpinionPolicy.from_settings(settings)
        challenger = None
        if policy.challenger_model and settings.challenger_base_url:
            from extraction.llm.client import LLMClient

            own = settings.model_copy(update={"llm_api_key": settings.challenger_api_key}) \
                if settings.challenger_api_key is not None else settings
            challenger = LLMClient.from_settings(
                own, limiter=getattr(client, "limiter", None),
                base_url=settings.challenger_base_url, model=policy.challenger_model)
            attach = getattr(client, "attach", None)
            if attach is not None:
                attach(challenger)
        return cls(policy, client, challenger)

    @property
    def enabled(self) -> bool:
        return self.policy.enabled

    async def ask(self, messages: Sequence[Mapping[str, Any]], response_model: type,
                  unit: Sequence[VariableInfo], *, temperature: float, max_tokens: int,
                  model: str | None) -> Opinions:
        """Every second answer to the call ``messages`` made, asked at once (the client's
        limiter caps how many are in flight).

        Raises:
            LLMError: a fatal failure (an unknown challenger model, bad credentials): it
                would fail every document.
        """
        policy = self.policy
        jobs: list[tuple[str, Any]] = []
        for index in range(policy.samples):
            jobs.append(("sample", self.client.complete(
                messages, response_model, temperature=policy.temperature,
                max_tokens=max_tokens, model=model, seed=index + 1)))
        if policy.challenger_model:
            jobs.append(("challenger", self.challenger_client.complete(
                messages, response_model, temperature=temperature, max_tokens=max_tokens,
                model=policy.challenger_model)))
        outcomes = await asyncio.gather(*(job for _, job in jobs), return_exceptions=True)
        opinions = Opinions(samples={v.name: [] for v in unit})
        for (kind, _), outcome in zip(jobs, outcomes):
            if isinstance(outcome, LLMError):
                if is_fatal(outcome):
                    raise outcome
                opinions.errors.append(outcome)
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            opinions.results.append(outcome)
            values = _values(outcome.output, unit)
            if kind == "sample":
                for name, value in values.items():
                    opinions.samples[name].append(value)
            else:
                opinions.challenger = values
        return opinions

    def apply(self, cells: Sequence[CellResult], unit: Sequence[VariableInfo],
              opinions: Opinions) -> None:
        """Fold ``opinions`` into the cells of the call (see the module docstring)."""
        for cell, variable in zip(cells, unit):
            if cell.status is ExtractionStatus.FAILED:
                continue
            self._apply_one(cell, variable, opinions)

    def _apply_one(self, cell: CellResult, variable: VariableInfo, opinions: Opinions) -> None:
        policy = self.policy
        first = cell.value if cell.status is ExtractionStatus.OK else None
        samples = opinions.samples.get(variable.name, [])
        has_challenger = variable.name in opinions.challenger
        if not samples and not has_challenger:
            return
        factor = 1.0
        votes = agreeing = 0
        parts = []
        if samples:
            agree = sum(same_answer(variable.type, first, s) for s in samples)
            factor *= (1 + agree) / (1 + len(samples))
            votes += len(samples)
            agreeing += agree
            parts.append(f"samples: {agree} of {len(samples)} agree ("
                         + ", ".join(_show(s) for s in samples) + ")")
        disputed = False
        if has_challenger:
            answer = opinions.challenger[variable.name]
            agree = same_answer(variable.type, first, answer)
            votes += 1
            agreeing += int(agree)
            parts.append(f"challenger {policy.challenger_model}: {_show(answer)}"
                         + ("" if agree else f" (the first answer: {_show(first)})"))
            if not agree:
                disputed = policy.on_disagreement == "null" and first is not None
                factor *= policy.disagreement_factor
        cell.agreement = round(agreeing / votes, 4)
        cell.opinion = DISPUTED if disputed else (AGREED if agreeing == votes else SPLIT)
        cell.opinion_reason = "; ".join(parts)
        if disputed:
            # The quote and raw answer stay, so a reviewer sees what the first model said.
            cell.value = None
            cell.status = ExtractionStatus.NOT_FOUND
            cell.opinion_reason = "disputed, no value stored; " + cell.opinion_reason
        if cell.confidence is not None:
            cell.confidence = round(cell.confidence * factor, 4)
