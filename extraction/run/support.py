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
"""

from __future__ import annotations

import calendar
import functools
import itertools
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from extraction.models import VariableType
from extraction.run.grounding import _CHAR_MAP, _DROP
from extraction.run.results import VariableInfo

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

SupportStatus = Literal["supported", "unsupported", "not_checkable"]
SUPPORTED: SupportStatus = "supported"
UNSUPPORTED: SupportStatus = "unsupported"
NOT_CHECKABLE: SupportStatus = "not_checkable"

#: Share of a TEXT value's words the quote must contain.
TEXT_COVERAGE = 0.6
#: How many words before or after the condition's words a negation cue may stand.
NEGATION_WINDOW = 3
#: Languages ``dateparser`` tries; detecting among all it knows costs ~0.3 s a quote.
DATE_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt")


@dataclass(frozen=True)
class Support:
    """The verdict of the value–quote check and why, in words a reviewer can act on."""

    status: SupportStatus
    reason: str

    @property
    def unsupported(self) -> bool:
        return self.status == UNSUPPORTED


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
    folded = _fold(quote)
    kind = variable.type
    if kind is VariableType.NUMBER:
        return _number(value, quote, folded)
    if kind is VariableType.DATE:
        return _date(value, quote, folded, tuple(date_languages))
    if kind is VariableType.CATEGORY:
        return _category(variable, value, folded, aliases or {})
    if kind is VariableType.BOOLEAN:
        return _boolean(variable, value, folded)
    return _text(value, folded, text_coverage)


_FOLD_TABLE = str.maketrans({**_CHAR_MAP, **dict.fromkeys(_DROP)})
_SPACES = re.compile(r"\s+")


@functools.lru_cache(maxsize=4096)
def _fold(text: str) -> str:
    """Case, whitespace, typographic quotes/dashes and ligatures folded, as grounding folds
    them (:func:`~extraction.run.grounding.normalize_for_search`) but without its offset map,
    which costs ~0.5 ms a quote."""
    folded = unicodedata.normalize("NFKC", text.translate(_FOLD_TABLE)).lower()
    return _SPACES.sub(" ", folded.translate(_FOLD_TABLE)).strip()


# ------------------------------------------------------------------ NUMBER

# Digits joined by separators; a space (or no-break/thin space) joins only a following group of
# exactly three digits, so "in 2019 120 patients" stays two numbers.
_DIGITS = re.compile(r"\d+(?:(?:[.,']|[ \u00a0\u202f](?=\d{3}(?!\d)))\d+)*")
_GROUP_SPLIT = re.compile(r"[.,' \u00a0\u202f]")
_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "mil": 1e3, "millones": 1e6,
           "millón": 1e6, "mio": 1e6, "mrd": 1e9, "bn": 1e9, "m": 1e6, "k": 1e3}
_SCALE_AFTER = re.compile(r"\s*(thousand|million|billion|millones|millón|mio|mrd|bn|k|m)\b")
_PERCENT_AFTER = re.compile(r"\s*(%|percent\b|per cent\b|pct\b|por ciento\b|prozent\b)")
_RANGE_BETWEEN = re.compile(r"^\s*(?:-|to|and|through|until|bis|a|y)\s*$")


@dataclass(frozen=True)
class _Written:
    """One number as written in the quote, with every value it can be read as."""

    text: str
    start: int
    end: int
    readings: tuple[float, ...]


def _readings(token: str) -> set[float]:
    """Every value a digit token can stand for (``1,204`` is 1204 or 1.204)."""
    separators = [c for c in token if not c.isdigit()]
    groups = _GROUP_SPLIT.split(token)
    if not separators:
        return {float(token)}
    out: set[float] = set()
    thousands_shape = len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])
    if thousands_shape and len(set(separators)) == 1:
        out.add(float("".join(groups)))
    last = separators[-1]
    head, tail = groups[:-1], groups[-1]
    grouped_head = len(head) == 1 or (len(head[0]) <= 3 and all(len(g) == 3 for g in head[1:]))
    if last in ".," and grouped_head and last not in separators[:-1] \
            and len(set(separators[:-1])) <= 1:
        out.add(float("".join(head) + "." + tail))
    if not out:  # an odd shape ("1.2.3", "12,34,56"): its parts, so nothing is missed
        out.update(float(g) for g in groups if g)
    return out


def _written_numbers(text: str) -> list[_Written]:
    """The numbers of ``text`` (already folded) with sign, scale and percent readings."""
    found: list[_Written] = []
    for match in _DIGITS.finditer(text):
        start, end = match.span()
        if start > 0 and (text[start - 1].isalpha() or text[start - 1] == "_"):
            continue  # part of an identifier such as "CARDIO7" or "HbA1c"
        values = _readings(match.group(0))
        signed = start > 0 and text[start - 1] == "-" and (start < 2 or not
                                                           text[start - 2].isalnum())
        if signed:
            values |= {-v for v in values}
        after = text[end:end + 16]
        scale = _SCALE_AFTER.match(after)
        if scale:
            factor = _SCALES[scale.group(1)]
            values |= {v * factor for v in values}
        if _PERCENT_AFTER.match(after):
            values |= {v / 100 for v in values}
        found.append(_Written(match.group(0), start, end, tuple(values)))
    return found


def _ranges(text: str, numbers: list[_Written]) -> list[tuple[str, float]]:
    """Midpoints of "10-20", "10 to 20", "between 10 and 20"."""
    out = []
    for left, right in itertools.pairwise(numbers):
        if _RANGE_BETWEEN.match(text[left.end:right.start]):
            for a in left.readings:
                for b in right.readings:
                    out.append((text[left.start:right.end], (a + b) / 2))
    return out


@functools.lru_cache(maxsize=1024)
def _words_to_digits(text: str) -> str:
    """Number words written as digits ("twenty-four" → "24"); the text itself if none."""
    from number_parser import parse  # imported here: it loads word lists for five languages

    try:
        return parse(text)
    except Exception:  # noqa: BLE001 - a parser failure must not fail an extraction
        return text


def _decimals(value: float) -> int:
    text = repr(float(value))
    if "e" in text or "." not in text:
        return 0
    fraction = text.split(".")[1].rstrip("0")
    return len(fraction)


def _same_number(written: float, value: float) -> bool:
    if math.isclose(written, value, rel_tol=1e-9, abs_tol=1e-9):
        return True
    places = _decimals(value)
    return places > 0 and math.isclose(round(written, places), value, rel_tol=1e-9,
                                       abs_tol=1e-9)


def _show(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _find_number(text: str, value: float, seen: list[str]) -> Support | None:
    numbers = _written_numbers(text)
    for number in numbers:
        if any(_same_number(r, value) for r in number.readings):
            return Support(SUPPORTED, f"the quote states {number.text}")
        seen.append(number.text)
    for written, midpoint in _ranges(text, numbers):
        if _same_number(midpoint, value):
            return Support(SUPPORTED, f"{_show(value)} is the midpoint of {written}")
    return None


def _number(value: Any, quote: str, folded: str) -> Support:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return Support(NOT_CHECKABLE, f"{value!r} is not a number")
    value = float(value)
    seen: list[str] = []
    found = _find_number(folded, value, seen)
    if found is None:
        # Number words only when the digits did not match: the word parser costs ~2 ms a
        # quote, the digit scan microseconds, and most quotes write their numbers in digits.
        spelled = _words_to_digits(folded)
        if spelled != folded:
            words_seen: list[str] = []
            found = _find_number(spelled, value, words_seen)
            if found is not None:
                return Support(SUPPORTED, found.reason + " (in words)")
            seen += [w for w in words_seen if w not in seen]
    if found is not None:
        return found
    if not seen:
        return Support(UNSUPPORTED, f"the quote states no number, the value is {_show(value)}")
    shown = ", ".join(dict.fromkeys(seen))
    return Support(UNSUPPORTED, f"the quote states {shown}, not {_show(value)}")


# ------------------------------------------------------------------ DATE

_ISO_VALUE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_PRECISION = {"year": 1, "month": 2, "week": 3, "day": 3, "time": 3}
_PRECISION_NAME = {1: "year", 2: "month", 3: "day"}
_TWO_DIGITS = re.compile(r"\d\d")
_DATE_SETTINGS = {"PREFER_DAY_OF_MONTH": "first", "RETURN_AS_TIMEZONE_AWARE": False}


def _usual_forms(parts: tuple[int, ...]) -> list[str]:
    """The value written the usual English ways ("March 2021", "15/03/2021", "March 15, 2021"),
    looked for before the parser runs: ``search_dates`` costs tens of milliseconds a quote."""
    if len(parts) < 2:
        return []
    year, month = parts[0], parts[1]
    names = [calendar.month_name[month], calendar.month_abbr[month]]
    if len(parts) == 2:
        return ([f"{n} {year}" for n in names] + [f"{n}, {year}" for n in names]
                + [f"{month:02d}/{year}", f"{month}/{year}", f"{year}/{month:02d}"])
    day = parts[2]
    forms = [f"{day:02d}/{month:02d}/{year}", f"{day}/{month}/{year}",
             f"{month:02d}/{day:02d}/{year}", f"{month}/{day}/{year}",
             f"{day:02d}.{month:02d}.{year}", f"{day}.{month}.{year}",
             f"{year}/{month:02d}/{day:02d}"]
    for n in names:
        forms += [f"{day} {n} {year}", f"{day:02d} {n} {year}", f"{n} {day}, {year}",
                  f"{n} {day} {year}", f"{day}. {n} {year}"]
    return forms


@functools.lru_cache(maxsize=1024)
def _quote_dates(quote: str, languages: tuple[str, ...]) -> tuple[tuple[str, date, int], ...]:
    """(text, date, precision 1..3) of every date ``dateparser`` finds in the quote."""
    from dateparser.date import DateDataParser  # imported here: slow to load
    from dateparser.search import search_dates

    try:
        found = search_dates(quote, languages=list(languages) or None,
                             settings=_DATE_SETTINGS) or []
        parser = DateDataParser(settings=_DATE_SETTINGS)
        out = []
        for text, when in found:
            if not _TWO_DIGITS.search(text):
                continue  # "no", "now", "1:1": words and ratios the parser reads as dates
            period = parser.get_date_data(text).period or "day"
            out.append((text.strip(), when.date(), _PRECISION.get(period, 3)))
        return tuple(out)
    except Exception:  # noqa: BLE001 - a parser failure must not fail an extraction
        return ()


def _date_parts(d: date, precision: int) -> tuple[int, ...]:
    return (d.year, d.month, d.day)[:precision]


def _date(value: Any, quote: str, folded: str, languages: tuple[str, ...]) -> Support:
    match = _ISO_VALUE.match(str(value).strip())
    if not isinstance(value, str) or match is None:
        return Support(NOT_CHECKABLE, f"{value!r} is not an ISO date")
    parts = tuple(int(p) for p in match.groups() if p is not None)
    precision = len(parts)
    # A quote that writes the value itself needs no parser ("2021-03" in "since 2021-03").
    if re.search(rf"(?<![\d-]){re.escape(match.group(0))}(?![\d])", quote):
        return Support(SUPPORTED, f"the quote states {match.group(0)}")
    for form in _usual_forms(parts):
        if re.search(rf"(?<![\w/.]){re.escape(form.lower())}(?![\w/]|\.\d)", folded):
            return Support(SUPPORTED, f"the quote states {form!r}")
    dates = _quote_dates(quote, languages)
    if not dates:
        return Support(UNSUPPORTED, f"the quote states no date, the value is {value}")
    coarser = []
    for text, when, found_precision in dates:
        if found_precision >= precision and _date_parts(when, precision) == parts:
            return Support(SUPPORTED, f"the quote states {text!r}")
        if found_precision < precision and _date_parts(when, found_precision) == \
                parts[:found_precision]:
            coarser.append(text)
    if coarser:
        level = _PRECISION_NAME[min(p for _, _, p in dates)]
        return Support(UNSUPPORTED, f"the quote gives only the {level} ({coarser[0]!r}), "
                                    f"the value is {value}")
    shown = ", ".join(repr(t) for t, _, _ in dates)
    return Support(UNSUPPORTED, f"the quote states {shown}, not {value}")


# ------------------------------------------------------------------ CATEGORY


def _spans(folded: str, phrase: str) -> list[tuple[int, int]]:
    needle = _fold(phrase)
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


def _category(variable: VariableInfo, value: Any, folded: str,
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
    words = _WORD.findall(_fold(f"{label} {name.replace('_', ' ')}"))
    stems = [_stem(w) for w in words if len(w) >= 3 and w not in _STOPWORDS]
    return list(dict.fromkeys(stems))


def _boolean(variable: VariableInfo, value: Any, folded: str) -> Support:
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


def _text(value: Any, folded: str, threshold: float) -> Support:
    words = list(dict.fromkeys(_tokens(_fold(_as_text(value)))))
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
