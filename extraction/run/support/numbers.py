"""NUMBER: does the quote write the value, in any usual form (see the package docstring)?"""

from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

from extraction.run.support.verdict import NOT_CHECKABLE, SUPPORTED, UNSUPPORTED, Support

__all__ = ["number_support"]

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


def number_support(value: Any, quote: str, folded: str) -> Support:
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
