"""A prompt's model settings: the answer budget per type, temperature and max_tokens checks.

Token counts are estimated as characters / 4 (no tokenizer is needed offline); they only bound
answer budgets and the room given to worked examples. The answer budget of a TEXT variable
follows how it is answered (:func:`text_style`: verbatim or summarised, within a bound read
from its format hint or instructions).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Literal

from extraction.errors import ValidationError
from extraction.models import VariableType
from extraction.prompts.variables import OTHER_CATEGORY, VariableLike

__all__ = [
    "DEFAULT_TEMPERATURE",
    "MAX_MAX_TOKENS",
    "MAX_TEMPERATURE",
    "MIN_MAX_TOKENS",
    "TextStyle",
    "check_max_tokens",
    "check_temperature",
    "default_max_tokens",
    "estimate_tokens",
    "text_style",
]

DEFAULT_TEMPERATURE = 0.0
MAX_TEMPERATURE = 0.2
MIN_MAX_TOKENS = 16
MAX_MAX_TOKENS = 16384

# Per answer: the confidence, an evidence quote of ≤ 25 words, the JSON keys around them.
_ANSWER_OVERHEAD_TOKENS = 96
_VALUE_TOKENS = {VariableType.BOOLEAN: 8, VariableType.DATE: 16, VariableType.NUMBER: 24}
_TOKENS_PER_WORD = 2  # generous: non-English text and JSON escaping take more than 1.3
_WORDS_PER_SENTENCE = 25


@dataclass(frozen=True)
class TextStyle:
    """How a TEXT variable is answered: copied verbatim or summarised, within a bound."""

    style: Literal["verbatim", "summary"]
    limit: int
    unit: Literal["words", "characters", "sentences"]

    @property
    def bound(self) -> str:
        return f"at most {self.limit} {self.unit if self.limit != 1 else self.unit[:-1]}"

    @property
    def answer_tokens(self) -> int:
        if self.unit == "characters":
            return math.ceil(self.limit / 4) + 8
        words = self.limit * (_WORDS_PER_SENTENCE if self.unit == "sentences" else 1)
        return words * _TOKENS_PER_WORD


def estimate_tokens(text: str) -> int:
    """Tokens in ``text``, estimated as characters / 4 (rounded up)."""
    return math.ceil(len(text) / 4)


_VERBATIM_RE = re.compile(
    r"\b(verbatim|exact(ly)?|word[- ]for[- ]word|as written|quoted?|copy)\b", re.IGNORECASE
)
_SUMMARY_RE = re.compile(
    r"\b(summar(y|ies|ise|ize|ised|ized|ising|izing)|paraphrase|in your own words|"
    r"describe|overview|brief(ly)?)\b",
    re.IGNORECASE,
)
_LENGTH_RE = re.compile(r"\b(\d{1,5})\s*(words?|characters?|chars?|sentences?)\b", re.IGNORECASE)
_DEFAULT_LIMITS = {"verbatim": 30, "summary": 60}
_LIMIT_RANGE = {"words": (1, 1000), "characters": (10, 5000), "sentences": (1, 30)}


def text_style(variable: VariableLike) -> TextStyle:
    """How a TEXT variable should be answered, read from its format hint, then its instructions.

    The hint wins over the instructions because it is the field meant for the answer's shape.
    """
    style: Literal["verbatim", "summary"] | None = None
    for source in (variable.format_hint or "", variable.instructions or ""):
        if _VERBATIM_RE.search(source):
            style = "verbatim"
        elif _SUMMARY_RE.search(source):
            style = "summary"
        if style:
            break
    style = style or "verbatim"
    for source in (variable.format_hint or "", variable.instructions or ""):
        match = _LENGTH_RE.search(source)
        if match:
            raw_unit = match.group(2).lower()
            unit: Literal["words", "characters", "sentences"] = (
                "characters" if raw_unit.startswith("char")
                else "sentences" if raw_unit.startswith("sentence") else "words"
            )
            low, high = _LIMIT_RANGE[unit]
            return TextStyle(style, min(max(int(match.group(1)), low), high), unit)
    return TextStyle(style, _DEFAULT_LIMITS[style], "words")


def default_max_tokens(variable: VariableLike) -> int:
    """The answer budget of one variable: value + confidence + evidence quote, by type.

    The LLM layer sums these budgets when one call answers every variable.
    """
    vtype = variable.type
    if vtype is VariableType.TEXT:
        value = text_style(variable).answer_tokens
    elif vtype is VariableType.CATEGORY:
        sizes = [estimate_tokens(json.dumps(c)) + 2 for c in (variable.categories or [])]
        sizes.append(estimate_tokens(json.dumps(OTHER_CATEGORY)) + 2)
        value = sum(sizes) if variable.multi_select else max(sizes)
    else:
        value = _VALUE_TOKENS[vtype]
    total = _ANSWER_OVERHEAD_TOKENS + value
    return min(MAX_MAX_TOKENS, 8 * math.ceil(total / 8))


def check_temperature(value: float) -> float:
    """``value`` if it is an allowed sampling temperature (0 … 0.2), else a clear error.

    Extraction must be repeatable: a higher temperature makes the same document give
    different answers between runs.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"temperature must be a number, got {value!r}",
                              field="temperature") from None
    if math.isnan(number) or not 0.0 <= number <= MAX_TEMPERATURE:
        raise ValidationError(
            f"temperature {value} is not allowed: use a value from 0 to {MAX_TEMPERATURE} "
            "(extraction needs repeatable answers)",
            field="temperature",
        )
    return number


def check_max_tokens(value: int) -> int:
    """``value`` if it is a sensible answer budget, else a clear error."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"max_tokens must be a whole number, got {value!r}",
                              field="max_tokens")
    if not MIN_MAX_TOKENS <= value <= MAX_MAX_TOKENS:
        raise ValidationError(
            f"max_tokens {value} is out of range: use {MIN_MAX_TOKENS} to {MAX_MAX_TOKENS}",
            field="max_tokens",
        )
    return value
