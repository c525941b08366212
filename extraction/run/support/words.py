"""CATEGORY, BOOLEAN and TEXT: checks that read the quote's words (see the package docstring).

A category is named by its label or aliases as words; a condition is affirmed or negated by
cue words near its own words; a text value is covered by the share of its words the quote has.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from extraction.run.results import VariableInfo
from extraction.run.support.verdict import NOT_CHECKABLE, SUPPORTED, UNSUPPORTED, Support, fold

__all__ = ["NEGATION_WINDOW", "boolean_support", "category_support", "text_support"]

#: How many words before or after the condition's words a negation cue may stand.
NEGATION_WINDOW = 3


def _spans(folded: str, phrase: str) -> list[tuple[int, int]]:
    needle = fold(phrase)
    if not needle:
        return []
    pattern = rf"(?<!\w){re.escape(needle)}(?!\w)"
    return [m.span() for m in re.finditer(pattern, folded)]


def _named(folded: str, names: Mapping[str, Sequence[str]]) -> set[str]:
    """The categories whose label or alias appears, ignoring matches inside a longer match."""
    hits: list[tuple[int, int, str]] = []
    for label, words in names.items():
        for word in (label, *words):
            hits += [(s, e, label) for s, e in _spans(folded, word)]
    named = set()
    for start, end, label in hits:
        inside = any(s <= start and end <= e and (e - s) > (end - start) and other != label
                     for s, e, other in hits)
        if not inside:
            named.add(label)
    return named


def category_support(variable: VariableInfo, value: Any, folded: str,
              aliases: Mapping[str, Sequence[str]]) -> Support:
    labels = list(variable.categories or ())
    names = {label: tuple(aliases.get(label, ())) for label in labels}
    chosen = [value] if isinstance(value, str) else list(value) if isinstance(
        value, (list, tuple)) else []
    chosen = [c for c in chosen if c in names]
    if not chosen:
        return Support(NOT_CHECKABLE, f"{value!r} is not one of the categories")
    named = _named(folded, names)
    missing = [c for c in chosen if c not in named]
    others = sorted(named - set(chosen), key=labels.index)
    if not missing and not others:
        return Support(SUPPORTED, f"the quote names {', '.join(map(repr, chosen))}")
    if missing and others:
        return Support(UNSUPPORTED, f"the quote names {', '.join(map(repr, others))}, not "
                                    f"{', '.join(map(repr, missing))}")
    if missing:
        return Support(NOT_CHECKABLE, "the quote names no category; the value is read into it")
    return Support(NOT_CHECKABLE, f"the quote names {', '.join(map(repr, chosen))} and also "
                                  f"{', '.join(map(repr, others))}")


# ------------------------------------------------------------------ BOOLEAN

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_STOPWORD_TEXT = (
    "a an and any are as at be by did do does for from has have if in into is it its of on "
    "or that the their there this to was were whether which who with yes no true false flag "
    "study trial patients participants document report")
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_SUFFIXES = ("izations", "isations", "ization", "isation", "izing", "ising", "ized", "ised",
             "izes", "ises", "ize", "ise", "ation", "ing", "ed", "ly", "es", "s")
_NEGATION_TEXT = (
    "not no without never neither nor none non cannot absent absence lack lacked lacking "
    "nicht kein keine ohne sin nunca pas sans")
_NEGATIONS = frozenset(_NEGATION_TEXT.split())
_NEGATED_PREFIXES = ("non", "un", "not")


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def _condition_stems(variable: VariableInfo) -> list[str]:
    return _stems_of(variable.label, variable.name)


@functools.lru_cache(maxsize=1024)
def _stems_of(label: str, name: str) -> list[str]:
    words = _WORD.findall(fold(f"{label} {name.replace('_', ' ')}"))
    stems = [_stem(w) for w in words if len(w) >= 3 and w not in _STOPWORDS]
    return list(dict.fromkeys(stems))


def boolean_support(variable: VariableInfo, value: Any, folded: str) -> Support:
    if not isinstance(value, bool):
        return Support(NOT_CHECKABLE, f"{value!r} is not true or false")
    stems = _condition_stems(variable)
    words = [w for w in re.split(r"[^\w']+|_", folded) if w]
    hits = []
    for i, word in enumerate(words):
        for stem in stems:
            if word.startswith(stem):
                hits.append((i, False))
            elif any(word.startswith((p + stem, p + "-" + stem)) for p in _NEGATED_PREFIXES):
                hits.append((i, True))  # "unblinded", "nonrandomised"
    if not hits:
        return Support(NOT_CHECKABLE, "the quote does not mention the condition "
                       f"({', '.join(stems) or variable.name})")
    negated = False
    for i, prefixed in hits:
        window = words[max(0, i - NEGATION_WINDOW):i] + words[i + 1:i + 1 + NEGATION_WINDOW]
        if prefixed or any(w in _NEGATIONS or w.endswith("n't") for w in window):
            negated = True
    says = "negates" if negated else "states"
    if negated == value:
        return Support(UNSUPPORTED, f"the quote {says} the condition, the value is "
                                    f"{str(value).lower()} (cue-based)")
    return Support(SUPPORTED, f"the quote {says} the condition (cue-based)")


# ------------------------------------------------------------------ TEXT


def _plain(word: str) -> str:
    """Accents dropped, a plural -s dropped: "Études" and "etude" count as one word."""
    word = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def _tokens(text: str) -> list[str]:
    return [_plain(w) for w in _WORD.findall(text)]


def text_support(value: Any, folded: str, threshold: float) -> Support:
    words = list(dict.fromkeys(_tokens(fold(_as_text(value)))))
    if not words:
        return Support(NOT_CHECKABLE, "the value has no words to look for")
    present = set(_tokens(folded))
    covered = [w for w in words if w in present]
    share = len(covered) / len(words)
    if share >= threshold:
        return Support(SUPPORTED, f"the quote contains {len(covered)} of the value's "
                                  f"{len(words)} words")
    missing = [w for w in words if w not in present][:5]
    return Support(UNSUPPORTED, f"the quote contains {len(covered)} of the value's "
                                f"{len(words)} words (missing: {', '.join(missing)})")


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)
