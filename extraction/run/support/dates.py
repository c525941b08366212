"""DATE: does the quote give the value's date at the value's precision (package docstring)?"""

from __future__ import annotations

import calendar
import functools
import re
from datetime import date
from typing import Any

from extraction.run.support.verdict import NOT_CHECKABLE, SUPPORTED, UNSUPPORTED, Support

__all__ = ["date_support"]

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


def date_support(value: Any, quote: str, folded: str, languages: tuple[str, ...]) -> Support:
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
