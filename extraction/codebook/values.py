"""Normalise the values an LLM returns into the codebook's types.

Why leniency here: small local models often answer ``"1,234"`` for a number, ``"March 2021"``
for a date or ``"phase 2"`` for the category ``"Phase 2"``. Re-asking for each of those costs a
full call; turning an unambiguous answer into its canonical form costs nothing. What is
ambiguous or wrong raises :class:`ValueError` with a message meant for the model (the response
models turn it into a validation error, and the LLM layer re-asks with it).

Rules, per type (the same rules the prompt states, so the model and this module agree):

* NUMBER — JSON numbers pass; strings lose thousands separators (``"12,500"`` → 12500.0),
  accept a decimal comma (``"3,5"`` → 3.5, ``"1.234,5"`` → 1234.5), a unit or words around one
  number (``"120 participants"``, ``"about 300"``, ``"45%"``), scale words
  (``"1.2 million"``), written numbers (``"twelve"``, ``"one hundred and five"``) and ranges,
  reported as their midpoint (``"10–20"`` → 15.0). Two unrelated numbers are ambiguous.
* DATE — ISO 8601 out: ``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY`` (partial dates are kept, never
  padded). In: ISO dates and datetimes (the time is dropped), ``2021/03/14``, ``14.03.2021``,
  ``March 2021``, ``14 March 2021``, ``March 14, 2021``, ``03/2021``. Slashed day/month orders
  are resolved when one part is above 12; otherwise only the year is certain and only the year
  is kept (the prompt asks for the same).
* BOOLEAN — JSON booleans, ``yes/no``, ``true/false``, ``y/n``, ``1/0``.
* CATEGORY — matched to the canonical spelling exactly, then ignoring case and spacing, then
  ignoring punctuation (``"phase-2"`` → ``"Phase 2"``), then the same over the category's
  aliases the codebook declares (``"pharmaceutical company"`` → ``"Industry"``). With ``allow_other`` a value that fits
  no category becomes ``"other"`` (what the prompt asks for); without it, it is an error.
  Multi-select accepts a list or one string (split on commas/semicolons when every part is a
  category); duplicates are dropped and an empty list means "not stated".
* TEXT — stripped; placeholders (``""``, ``"N/A"``, ``"not reported"``, …) mean "not stated".

``None`` and absence placeholders normalise to ``None`` for every type (a ``not_found`` answer).
Wrong JSON types raise :class:`ValueError` too, not ``TypeError``: pydantic turns a ValueError
into a validation error (and so a re-ask), a TypeError would escape.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Protocol

from extraction.models import VariableType

__all__ = [
    "category_aliases",
    "ABSENT_MARKERS",
    "OTHER",
    "ValueLike",
    "is_absent",
    "normalize_boolean",
    "normalize_categories",
    "normalize_category",
    "normalize_date",
    "normalize_number",
    "normalize_text",
    "normalize_value",
]

#: The extra category a variable with ``allow_other`` accepts (the prompt names it the same).
OTHER = "other"

#: Answers that mean "the document does not say" whatever the type.
ABSENT_MARKERS = frozenset({
    "", "null", "none", "nil", "n/a", "na", "n.a.", "-", "--", "—", "–", "?", "unknown",
    "not stated", "not reported", "not mentioned", "not specified", "not available",
    "not given", "not found", "not provided", "no data", "no information", "missing",
})


class ValueLike(Protocol):
    """What normalisation needs of a variable (``VariableInfo`` and ORM rows fit)."""

    name: str
    type: VariableType
    categories: Sequence[str] | None
    allow_other: bool
    multi_select: bool


def _squash(text: str) -> str:
    return " ".join(text.split())


def is_absent(raw: Any) -> bool:
    """Whether ``raw`` is a "not stated" answer (None, empty, or a placeholder such as N/A)."""
    if raw is None:
        return True
    if isinstance(raw, str):
        return _squash(raw).lower().rstrip(".") in ABSENT_MARKERS or not raw.strip()
    if isinstance(raw, (list, tuple)):
        return all(is_absent(item) for item in raw)
    return False


def normalize_value(variable: ValueLike, raw: Any) -> Any:
    """``raw`` as the canonical value of ``variable``'s type, or None for "not stated".

    Raises:
        ValueError: the answer cannot be read as the type (the message says what is expected).
    """
    vtype = VariableType(variable.type)
    if vtype is VariableType.CATEGORY:
        categories = list(variable.categories or [])
        aliases = category_aliases(variable)
        if variable.multi_select:
            return normalize_categories(raw, categories, allow_other=variable.allow_other,
                                        aliases=aliases)
        return normalize_category(raw, categories, allow_other=variable.allow_other,
                                  aliases=aliases)
    if vtype is VariableType.NUMBER:
        return normalize_number(raw)
    if vtype is VariableType.DATE:
        return normalize_date(raw)
    if vtype is VariableType.BOOLEAN:
        return normalize_boolean(raw)
    return normalize_text(raw)


# --------------------------------------------------------------------------- TEXT


def normalize_text(raw: Any) -> str | None:
    """A stripped string, or None for empty answers and placeholders such as "N/A"."""
    if is_absent(raw):
        return None
    if isinstance(raw, (dict, list, tuple)):
        raise ValueError("expected a text string, got a JSON " + type(raw).__name__)  # noqa: TRY004
    return str(raw).strip()


# --------------------------------------------------------------------------- BOOLEAN

_TRUE = frozenset({"true", "yes", "y", "t", "1"})
_FALSE = frozenset({"false", "no", "n", "f", "0"})


def normalize_boolean(raw: Any) -> bool | None:
    """True/False from a JSON boolean or yes/no, true/false, y/n, 1/0; None when absent."""
    if isinstance(raw, bool):
        return raw
    if is_absent(raw):
        return None
    if isinstance(raw, (int, float)) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = raw.strip().lower().rstrip(".")
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(f"expected true or false (or null if not stated), got {raw!r}")


# --------------------------------------------------------------------------- CATEGORY


def _loose(text: str) -> str:
    return _squash(text).casefold()


def _alnum(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.casefold())


def category_aliases(variable: Any) -> dict[str, tuple[str, ...]]:
    """A variable's category aliases by label, from an ORM row (a stored mapping) or a
    ``VariableInfo`` (pairs); empty when it declares none."""
    raw = getattr(variable, "category_aliases", None)
    if not raw:
        return {}
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    return {str(label): tuple(str(w) for w in words) for label, words in pairs}


def _match_category(text: str, categories: Sequence[str],
                    aliases: Mapping[str, Sequence[str]] | None = None) -> str | None:
    """The category ``text`` names: exact, then case/space-insensitive, then punctuation-blind;
    then the same tiers over the aliases (an alias answer is read as its label).

    A tier that would match two categories is skipped: guessing between them is not allowed.
    """
    if text in categories:
        return text
    named = [(c, c) for c in categories]
    spelled = [(w, label) for label, words in (aliases or {}).items() if label in categories
               for w in words]
    for names in (named, spelled):
        for key in (_loose, _alnum):
            wanted = key(text)
            if not wanted:
                continue
            hits = {label for word, label in names if key(word) == wanted}
            if len(hits) == 1:
                return hits.pop()
    return None


def normalize_category(
    raw: Any, categories: Sequence[str], *, allow_other: bool = False,
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> str | None:
    """The canonical category ``raw`` names, ``"other"`` for an unlisted value when allowed.

    Raises:
        ValueError: a value that is no category (and ``allow_other`` is off), or a list.
    """
    if isinstance(raw, (list, tuple)):
        items = [item for item in raw if not is_absent(item)]
        if not items:
            return None
        if len(items) > 1:
            raise ValueError("expected exactly one category, got a list of several")
        raw = items[0]
    if not isinstance(raw, str):
        if raw is None:
            return None
        raw = str(raw)
    found = _match_category(raw.strip(), categories, aliases)
    if found is not None:
        return found
    if is_absent(raw):
        return None
    if allow_other:
        return OTHER
    listed = ", ".join(repr(c) for c in categories)
    raise ValueError(f"{raw!r} is not one of the categories {listed}; answer one of them "
                     "exactly, or null if the document does not say")


def normalize_categories(
    raw: Any, categories: Sequence[str], *, allow_other: bool = False,
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> list[str] | None:
    """Canonical categories for a multi-select answer, without duplicates; None if empty."""
    if is_absent(raw):
        return None
    if isinstance(raw, str):
        parts = [p.strip() for p in re.split(r"[;,]", raw)]
        if len(parts) > 1 and all(_match_category(p, categories, aliases) for p in parts if p):
            items: list[Any] = [p for p in parts if p]
        else:
            items = [raw]
    elif isinstance(raw, (list, tuple, set)):
        items = list(raw)
    else:
        items = [raw]
    out: list[str] = []
    for item in items:
        if is_absent(item):
            continue
        value = normalize_category(item, categories, allow_other=allow_other, aliases=aliases)
        if value is not None and value not in out:
            out.append(value)
    return out or None


# --------------------------------------------------------------------------- NUMBER

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}
_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_NUMBER_WORDS = set(_UNITS) | set(_TENS) | {"hundred", "dozen"} | set(_SCALES)
_FILLER = {"and", "a", "an"}

_NUM = r"[-+−]?(?:\d{1,3}(?:[,.\u00a0\u202f ]\d{3})+|\d+)(?:[.,]\d+)?"
_NUM_RE = re.compile(rf"(?<![\w.,]){_NUM}(?![\w]|[.,]\d)")
_SCALE_AFTER = re.compile(r"^\s*(thousand|million|billion|trillion)\b", re.IGNORECASE)
_RANGE_RE = re.compile(
    rf"^(?:between\s+|from\s+)?({_NUM})\s*(?:-|–|—|to|and)\s*({_NUM})$", re.IGNORECASE
)


def _parse_digits(token: str) -> float:
    """One numeric token with separators resolved (``"1,234.5"``, ``"1.234,5"``, ``"3,5"``)."""
    text = token.replace("\u2212", "-").replace("\u00a0", "").replace("\u202f", "").replace(" ", "")
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-")
    if "," in text and "." in text:
        decimal = "," if text.rfind(",") > text.rfind(".") else "."
        thousands = "." if decimal == "," else ","
        text = text.replace(thousands, "").replace(decimal, ".")
    elif "," in text:
        if re.fullmatch(r"\d{1,3}(,\d{3})+", text):
            text = text.replace(",", "")
        elif text.count(",") == 1:
            text = text.replace(",", ".")
        else:
            raise ValueError(f"cannot read the number {token!r}")
    elif text.count(".") > 1:
        if not re.fullmatch(r"\d{1,3}(\.\d{3})+", text):
            raise ValueError(f"cannot read the number {token!r}")
        text = text.replace(".", "")
    return sign * float(text)


def _words_to_number(words: list[str]) -> float | None:
    """``["one", "hundred", "and", "five"]`` → 105.0; None if the words are not a number."""
    total, current, seen = 0.0, 0.0, False
    for word in words:
        if word in _FILLER:
            continue
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "dozen":
            current = (current or 1) * 12
        elif word == "hundred":
            current = (current or 1) * 100
        elif word in _SCALES:
            total += (current or 1) * _SCALES[word]
            current = 0.0
        else:
            return None
        seen = True
    return total + current if seen else None


def _written_number(text: str) -> float | None:
    words = re.findall(r"[a-z]+", text.lower().replace("-", " "))
    run: list[str] = []
    runs: list[list[str]] = []
    for word in words:
        if word in _NUMBER_WORDS or (run and word in _FILLER):
            run.append(word)
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    runs = [r for r in runs if any(w in _NUMBER_WORDS for w in r)]
    if len(runs) != 1:
        return None
    while runs[0] and runs[0][-1] in _FILLER:
        runs[0].pop()
    return _words_to_number(runs[0])


def normalize_number(raw: Any) -> float | None:
    """A float from a JSON number or a number written in text; None when absent.

    Raises:
        ValueError: no number, several unrelated numbers, or not finite.
    """
    if isinstance(raw, bool):
        raise ValueError("expected a number, got a boolean")  # noqa: TRY004
    if isinstance(raw, (int, float)):
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return value
    if is_absent(raw):
        return None
    if not isinstance(raw, str):
        raise ValueError(f"expected a number, got a JSON {type(raw).__name__}")  # noqa: TRY004
    text = _squash(raw).replace("\u2212", "-")
    core = re.sub(r"^(?:about|approximately|approx\.?|around|roughly|circa|ca\.?|~|≈|"
                  r"over|more than|at least|under|less than|fewer than|up to|almost|nearly|"
                  r"n\s*=|total(?: of)?:?)\s*", "", text, flags=re.IGNORECASE)
    core = core.rstrip(" %.")
    ranged = _RANGE_RE.match(core)
    if ranged:
        low, high = _parse_digits(ranged.group(1)), _parse_digits(ranged.group(2))
        if low <= high:
            return (low + high) / 2
    matches = list(_NUM_RE.finditer(text))
    if len(matches) == 1:
        match = matches[0]
        value = _parse_digits(match.group(0))
        scale = _SCALE_AFTER.match(text[match.end():])
        if scale:
            value *= _SCALES[scale.group(1).lower()]
        return value
    if not matches:
        written = _written_number(text)
        if written is not None:
            return written
        raise ValueError(f"expected a number, got {raw!r}; answer digits only, or null if "
                         "the document does not say")
    raise ValueError(f"{raw!r} holds several numbers; answer the one number asked for")


# --------------------------------------------------------------------------- DATE

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
_MONTHS["sept"] = 9
_MONTH = r"(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_ISO_RE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?(?:[T ]\d{1,2}:\d{2}.*)?$")
_YMD_RE = re.compile(r"^(\d{4})[/.](\d{1,2})(?:[/.](\d{1,2}))?$")
_DMY_DOT_RE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")
_SLASH_RE = re.compile(r"^(\d{1,2})[/-](\d{1,2})[/-](\d{4})$")
_MY_RE = re.compile(r"^(\d{1,2})[/.-](\d{4})$")
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_D_MONTH_Y = re.compile(rf"^{_DAY}\s+(?:of\s+)?{_MONTH},?\s+(\d{{4}})$", re.IGNORECASE)
_MONTH_D_Y = re.compile(rf"^{_MONTH}\s+{_DAY},?\s+(\d{{4}})$", re.IGNORECASE)
_MONTH_Y = re.compile(rf"^{_MONTH},?\s+(\d{{4}})$", re.IGNORECASE)


def _iso(year: int, month: int | None = None, day: int | None = None) -> str:
    if month is None:
        return f"{year:04d}"
    if not 1 <= month <= 12:
        raise ValueError(f"month {month} is not a month")
    if day is None:
        return f"{year:04d}-{month:02d}"
    date(year, month, day)  # raises ValueError for 2021-02-30
    return f"{year:04d}-{month:02d}-{day:02d}"


def _day_month(first: int, second: int, year: int) -> str:
    """A slashed date whose order is unknown: resolved when one part cannot be a month."""
    if first > 12 >= second:
        return _iso(year, second, first)
    if second > 12 >= first:
        return _iso(year, first, second)
    if first == second:
        return _iso(year, first, second)
    return _iso(year)  # 03/04/2021: only the year is certain


def normalize_date(raw: Any) -> str | None:
    """An ISO 8601 date string (``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY``); None when absent.

    Raises:
        ValueError: text that is not a recognisable date, or an impossible date.
    """
    if isinstance(raw, datetime):
        return raw.date().isoformat()
    if isinstance(raw, date):
        return raw.isoformat()
    if isinstance(raw, bool):
        raise ValueError("expected a date, got a boolean")  # noqa: TRY004
    if isinstance(raw, int) and 1000 <= raw <= 2999:
        return f"{raw:04d}"
    if is_absent(raw):
        return None
    if not isinstance(raw, str):
        raise ValueError(f"expected a date string, got a JSON {type(raw).__name__}")  # noqa: TRY004
    text = _squash(raw).rstrip(".")
    match = _ISO_RE.match(text)
    if match:
        year, month, day = (int(g) if g else None for g in match.groups())
        return _iso(year or 0, month, day)
    if match := _YMD_RE.match(text):
        year, month, day = (int(g) if g else None for g in match.groups())
        return _iso(year or 0, month, day)
    if match := _DMY_DOT_RE.match(text):
        return _iso(int(match.group(3)), int(match.group(2)), int(match.group(1)))
    if match := _SLASH_RE.match(text):
        return _day_month(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    if match := _MY_RE.match(text):
        return _iso(int(match.group(2)), int(match.group(1)))
    if match := _D_MONTH_Y.match(text):
        return _iso(int(match.group(3)), _MONTHS[match.group(2).lower()], int(match.group(1)))
    if match := _MONTH_D_Y.match(text):
        return _iso(int(match.group(3)), _MONTHS[match.group(1).lower()], int(match.group(2)))
    if match := _MONTH_Y.match(text):
        return _iso(int(match.group(2)), _MONTHS[match.group(1).lower()])
    raise ValueError(f"{raw!r} is not a date; answer ISO 8601: YYYY-MM-DD, or YYYY-MM / YYYY "
                     "when only the month or year is stated")
