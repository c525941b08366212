"""Does the evidence quote say the value? A per-type check of each answer against its own quote.

Why: grounding (:mod:`extraction.run.grounding`) proves that the quote is in the document, not
that the value can be read from it. Small models are confidently wrong in exactly that way:
the right sentence quoted, a wrong number written beside it ("363" for "A total of 356
participants were enrolled."). Checking the value against its quote is cheap, needs no second
LLM call, and gives the stored confidence a signal that ranks such cells first for review.

Each check returns a :class:`Support`: ``supported``, ``unsupported`` (the quote is there and
should show the value but shows something else or nothing) or ``not_checkable`` (no quote, a
value the rule cannot read, or a quote that neither confirms nor contradicts). Only
``unsupported`` lowers the confidence (see :mod:`extraction.run.confidence`); the rules lean
towards ``not_checkable`` wherever a right answer could be paraphrased, because a right value
flagged as unsupported costs a reviewer's time too.

Rules per type:

* **NUMBER** — the value equals a number written in the quote, in any usual form: thousands
  separators (``1,200`` ``1 200`` ``1.200`` ``1'200``), a decimal comma (``3,5``), number words
  (``twenty-four``, via ``number-parser``, which reads English, Spanish, Russian, Ukrainian and
  Hindi), scale words (``1.2 million``), a percentage read as a fraction (``45%`` → 0.45), the
  midpoint of a range (``10-20``, ``10 to 20``, ``between 10 and 20``), or the quote's number
  rounded to the value's decimals. Units are not converted (``2 years`` does not support 24
  months).
* **DATE** — the value written in a usual form ("2021-03", "March 2021", "15/03/2021"), or a
  date in the quote found and parsed by ``dateparser`` (``search_dates``: numeric and written
  forms in the languages of ``support_date_languages``, default :data:`DATE_LANGUAGES`), equals
  the value at the value's precision (``2021-03`` needs the month, ``2021-03-15`` the day). A
  quote that gives only the month does not support a value with a day.
* **CATEGORY** — the category's label (or one of its aliases) appears in the quote as words
  and no other category's does. Only another category named *instead* makes it unsupported; a
  quote naming no category (an inference, e.g. "funded by Acme Inc." for *Industry*) or both
  is not checkable. A label inside a longer label ("Phase 1" in "Phase 1/2") does not count.
* **BOOLEAN** — cue-based, no LLM: the condition's words (the variable's label and name,
  stemmed) are looked up in the quote, and a negation cue (not, no, without, never, non-, un-…)
  within :data:`NEGATION_WINDOW` words of them says the quote negates the condition. A value of
  true with a negated quote, or false with an affirmed one, is unsupported; a quote without the
  condition's words is not checkable.
* **TEXT** — the share of the value's words that the quote contains (case-, accent- and
  plural-tolerant) must reach a threshold (``support_text_coverage``, default
  :data:`TEXT_COVERAGE`).

The rules live by type: :mod:`.numbers`, :mod:`.dates`, and :mod:`.words` (CATEGORY, BOOLEAN,
TEXT: the checks that read the quote's words); :mod:`.verdict` holds the result and the
folding every check reads a quote through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from extraction.models import VariableType
from extraction.run.results import VariableInfo
from extraction.run.support.dates import date_support
from extraction.run.support.numbers import number_support
from extraction.run.support.verdict import NOT_CHECKABLE, SUPPORTED, UNSUPPORTED, Support, fold
from extraction.run.support.words import (
    NEGATION_WINDOW,
    boolean_support,
    category_support,
    text_support,
)

__all__ = [
    "DATE_LANGUAGES",
    "NEGATION_WINDOW",
    "NOT_CHECKABLE",
    "SUPPORTED",
    "TEXT_COVERAGE",
    "UNSUPPORTED",
    "Support",
    "check_support",
]


#: Share of a TEXT value's words the quote must contain.
TEXT_COVERAGE = 0.6
#: Languages ``dateparser`` tries; detecting among all it knows costs ~0.3 s a quote.
DATE_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt")


def check_support(
    variable: VariableInfo,
    value: Any,
    quote: str | None,
    *,
    aliases: Mapping[str, Sequence[str]] | None = None,
    text_coverage: float = TEXT_COVERAGE,
    date_languages: Sequence[str] = DATE_LANGUAGES,
) -> Support:
    """Check that ``quote`` states ``value`` for ``variable`` (rules in the module docstring).

    Args:
        variable: The variable (its type, categories, label and name are used).
        value: The normalised value (float, ISO date string, category label or list, bool, str).
        quote: The evidence quote the model gave (None: not checkable).
        aliases: Extra words per category label that count as naming it.
        text_coverage: Threshold for TEXT values.
        date_languages: Languages ``dateparser`` reads DATE quotes in (empty: detect).
    """
    if value is None:
        return Support(NOT_CHECKABLE, "no value")
    if quote is None or not quote.strip():
        return Support(NOT_CHECKABLE, "no evidence quote")
    folded = fold(quote)
    kind = variable.type
    if kind is VariableType.NUMBER:
        return number_support(value, quote, folded)
    if kind is VariableType.DATE:
        return date_support(value, quote, folded, tuple(date_languages))
    if kind is VariableType.CATEGORY:
        return category_support(variable, value, folded, aliases or {})
    if kind is VariableType.BOOLEAN:
        return boolean_support(variable, value, folded)
    return text_support(value, folded, text_coverage)
