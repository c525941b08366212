"""When does an extracted value count as the gold value? One rule per variable type.

The rules are stated in every report (:func:`MatchRules.describe`), because a number like
"accuracy 0.91" means nothing without them:

* NUMBER — ``math.isclose`` with a relative and an absolute tolerance (settings
  ``EXTRACTFLOW_EVAL_NUMBER_RTOL`` / ``_ATOL``; the defaults only absorb floating-point noise).
* DATE — compared **at the gold's precision**: a gold ``2021-03`` matches an extracted
  ``2021-03-14`` (the coder recorded the month; the extraction agrees on it), while a gold
  ``2021-03-14`` does not match an extracted ``2021-03`` (the extraction says less than the
  gold). When two runs are compared (neither is gold) both are cut to the coarser precision.
* CATEGORY — exact after case folding; multi-select values as sets.
* BOOLEAN — exact.
* TEXT — normalised (case folded, punctuation dropped, whitespace collapsed), then a match when
  the normalised texts are equal or their token-F1 (SQuAD-style bag-of-tokens overlap) is at
  least the threshold (``EXTRACTFLOW_EVAL_TEXT_F1``). The raw token-F1 is kept for the report.

"Not stated" (``None``) matches only "not stated"; the outcome of a cell tells omissions,
hallucinations and wrong values apart (:class:`Outcome`).
"""

from __future__ import annotations

import enum
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from extraction.models import VariableType

__all__ = ["RIGHT", "MatchRules", "Outcome", "category_key", "classify", "normalise_text", "token_f1", "values_match"]


class Outcome(enum.IntEnum):
    """What one evaluated cell is. Integer codes, so a column of them is a numpy array."""

    CORRECT = 0  #: both have a value, and they match
    WRONG = 1  #: both have a value, and they differ
    OMISSION = 2  #: the gold has a value, the extraction none (not_found or failed)
    HALLUCINATION = 3  #: the gold says "not stated", the extraction gave a value
    BOTH_ABSENT = 4  #: both say "not stated" (a right answer)
    FAILED_ABSENT = 5  #: the gold says "not stated", the extraction failed (no answer at all)


#: Outcomes that are right answers (what accuracy counts).
RIGHT = (Outcome.CORRECT, Outcome.BOTH_ABSENT)


@dataclass(frozen=True)
class MatchRules:
    """The tolerances of matching, from settings (see the module docstring)."""

    number_rtol: float = 1e-6
    number_atol: float = 1e-9
    text_f1_threshold: float = 0.8

    @classmethod
    def from_settings(cls, settings: Any) -> MatchRules:
        return cls(number_rtol=settings.eval_number_rtol, number_atol=settings.eval_number_atol,
                   text_f1_threshold=settings.eval_text_f1)

    def describe(self) -> dict[str, str]:
        """One sentence per type, as the report prints it."""
        return {
            "NUMBER": f"equal within a relative tolerance of {self.number_rtol:g} or an "
                      f"absolute tolerance of {self.number_atol:g} (math.isclose)",
            "DATE": "equal at the gold value's precision: a gold 2021-03 matches an extracted "
                    "2021-03-14, a gold 2021-03-14 does not match an extracted 2021-03",
            "CATEGORY": "exact after case folding; multi-select values compared as sets",
            "BOOLEAN": "exact",
            "TEXT": "case, punctuation and whitespace normalised; a match when equal or when "
                    f"the token-F1 is at least {self.text_f1_threshold:g} (mean token-F1 "
                    "reported too)",
        }


_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)


def normalise_text(value: Any) -> str:
    """Case folded, punctuation dropped, whitespace collapsed."""
    return " ".join(_PUNCT.sub(" ", str(value).casefold()).split())


def token_f1(gold: Any, extracted: Any) -> float:
    """Bag-of-tokens F1 of the two normalised texts (1.0 for two empty texts)."""
    return _f1(normalise_text(gold).split(), normalise_text(extracted).split())


def _f1(g: list[str], e: list[str]) -> float:
    if not g or not e:
        return float(g == e)
    overlap = sum((Counter(g) & Counter(e)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(e), overlap / len(g)
    return 2 * precision * recall / (precision + recall)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _date_parts(value: Any) -> list[str]:
    return str(value).strip()[:10].split("-")


def category_key(value: Any) -> Any:
    """A category value as matching compares it (case folded; a set for multi-select)."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return frozenset(str(v).casefold().strip() for v in value)
    return str(value).casefold().strip()


def values_match(vtype: VariableType, gold: Any, extracted: Any, rules: MatchRules, *,
                 symmetric: bool = False) -> tuple[bool, float | None]:
    """Whether two present values match under ``rules``; and the token-F1 for TEXT.

    Args:
        symmetric: neither value is gold (comparing two runs): dates are cut to the coarser
            of the two precisions instead of the gold's.
    """
    if vtype is VariableType.NUMBER:
        a, b = _number(gold), _number(extracted)
        if a is None or b is None:
            return (a is None and b is None and str(gold) == str(extracted)), None
        return math.isclose(a, b, rel_tol=rules.number_rtol, abs_tol=rules.number_atol), None
    if vtype is VariableType.DATE:
        g, e = _date_parts(gold), _date_parts(extracted)
        if symmetric:
            depth = min(len(g), len(e))
            return g[:depth] == e[:depth], None
        return len(e) >= len(g) and e[:len(g)] == g, None
    if vtype is VariableType.CATEGORY:
        return category_key(gold) == category_key(extracted), None
    if vtype is VariableType.BOOLEAN:
        return gold is extracted or gold == extracted, None
    g, e = normalise_text(gold), normalise_text(extracted)
    if g == e:
        return True, 1.0
    f1 = _f1(g.split(), e.split())
    return f1 >= rules.text_f1_threshold, f1


def _absent(value: Any) -> bool:
    return value is None or value == "" or value == []


def classify(vtype: VariableType, gold: Any, extracted: Any, rules: MatchRules, *,
             failed: bool = False, symmetric: bool = False) -> tuple[Outcome, float | None]:
    """The :class:`Outcome` of one cell, and the token-F1 when both are TEXT values.

    Args:
        failed: the extraction failed (no answer at all, not a "not stated" answer).
    """
    gold_absent, extracted_absent = _absent(gold), failed or _absent(extracted)
    if gold_absent and extracted_absent:
        return (Outcome.FAILED_ABSENT if failed else Outcome.BOTH_ABSENT), None
    if gold_absent:
        return Outcome.HALLUCINATION, None
    if extracted_absent:
        return Outcome.OMISSION, None
    same, f1 = values_match(vtype, gold, extracted, rules, symmetric=symmetric)
    return (Outcome.CORRECT if same else Outcome.WRONG), f1
