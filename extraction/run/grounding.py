"""Ground an evidence quote: find it in the document text → character offsets and page.

Why: a quote the model invented is the cheapest hallucination signal there is. Locating the
quote also gives a reviewer the exact place to check (offsets into ``Document.text`` and the
page, for PDFs).

Search order, first hit wins:

1. **exact** — the quote as written (within the preferred window first, e.g. the chunk the
   answer came from, then anywhere);
2. **normalized** — ignoring case, runs of whitespace (line breaks of a PDF), typographic
   quote marks and dashes (“ ” ‘ ’ – — → " ' -), soft hyphens and compatibility forms
   (NFKC: ligatures such as "ﬁ");
3. **fragments** — a quote shortened with an ellipsis (``…``, ``...``, ``[...]``): every part
   is found, in order, and the span runs from the first part's start to the last part's end.

Offsets are always relative to the full document text, and ``end`` is exclusive. The page is
1-based, from the document's ``page_offsets`` by binary search (the same rule as
:func:`extraction.documents.page_for_offset`, re-stated here so grounding does not import the
PDF parsers). A quote that is not found is *ungrounded*: the caller flags it and lowers the
confidence (see :mod:`extraction.run.confidence`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Grounding", "ground", "normalize_for_search", "page_of"]

Method = Literal["exact", "normalized", "fragments", "none"]

_CHAR_MAP = {
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2033": '"', "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "`": "'", "\u00b4": "'", "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-",
    "\u2014": "-", "\u2015": "-", "\u2212": "-",
}
_DROP = {"\u00ad", "\u200b", "\u200c", "\u200d", "\ufeff"}
_ELLIPSIS = re.compile(r"\s*(?:\[\s*(?:\.\s*){3}\]|\[…\]|\.{3,}|…)\s*")
_MIN_FRAGMENT = 3


@dataclass(frozen=True)
class Grounding:
    """Where a quote is in the document; ``grounded`` False means it was not found."""

    grounded: bool
    start: int | None = None
    end: int | None = None
    page: int | None = None
    method: Method = "none"


_NOT_GROUNDED = Grounding(False)


def page_of(page_offsets: Sequence[int], offset: int) -> int:
    """The 1-based page holding ``offset`` (an offset on a page separator → the page before)."""
    return max(1, bisect_right(page_offsets or (0,), offset))


def normalize_for_search(text: str) -> tuple[str, list[int]]:
    """``text`` folded for tolerant search, and for each folded char its index in ``text``.

    Folding: NFKC per character, lower case, typographic quotes/dashes to ASCII, soft hyphens
    and zero-width characters dropped, any whitespace run → one space.
    """
    out: list[str] = []
    index: list[int] = []
    pending_space = False
    for i, ch in enumerate(text):
        if ch in _DROP:
            continue
        if ch.isspace():
            pending_space = bool(out)
            continue
        folded = _CHAR_MAP.get(ch)
        if folded is None:
            folded = unicodedata.normalize("NFKC", ch).lower()
            folded = "".join(_CHAR_MAP.get(c, c) for c in folded)
        if pending_space:
            out.append(" ")
            index.append(i - 1)
            pending_space = False
        for c in folded:
            if c.isspace():
                continue
            out.append(c)
            index.append(i)
    return "".join(out), index


@functools.lru_cache(maxsize=16)
def _folded(text: str) -> tuple[str, tuple[int, ...]]:
    folded, index = normalize_for_search(text)
    return folded, tuple(index)


def _find_exact(quote: str, text: str, window: tuple[int, int] | None, after: int = 0) -> int:
    if window is not None:
        start = max(window[0], after)
        found = text.find(quote, start, window[1])
        if found >= 0:
            return found
    return text.find(quote, after)


def _find_folded(
    quote: str, text: str, window: tuple[int, int] | None, after: int = 0
) -> tuple[int, int] | None:
    """(start, end) in ``text`` of ``quote`` under folding, or None."""
    needle, _ = normalize_for_search(quote)
    if not needle:
        return None
    haystack, index = _folded(text)
    if not index:
        return None

    def to_folded(offset: int) -> int:
        # first folded position whose source index is >= offset
        lo, hi = 0, len(index)
        while lo < hi:
            mid = (lo + hi) // 2
            if index[mid] < offset:
                lo = mid + 1
            else:
                hi = mid
        return lo

    begin = to_folded(after)
    found = -1
    if window is not None:
        found = haystack.find(needle, max(begin, to_folded(window[0])), to_folded(window[1]))
    if found < 0:
        found = haystack.find(needle, begin)
    if found < 0:
        return None
    return index[found], index[found + len(needle) - 1] + 1


def _locate(
    quote: str, text: str, window: tuple[int, int] | None, after: int = 0
) -> tuple[int, int, Method] | None:
    found = _find_exact(quote, text, window, after)
    if found >= 0:
        return found, found + len(quote), "exact"
    span = _find_folded(quote, text, window, after)
    if span is not None:
        return span[0], span[1], "normalized"
    return None


def ground(
    quote: str | None,
    text: str,
    page_offsets: Sequence[int] = (0,),
    *,
    window: tuple[int, int] | None = None,
) -> Grounding:
    """Locate ``quote`` in ``text``.

    Args:
        quote: The model's evidence quote (None or blank → not grounded).
        text: The full document text the offsets refer to.
        page_offsets: Start offset of each page (``Document.page_offsets``).
        window: ``(start, end)`` searched first, e.g. the chunk the answer came from, so a
            phrase repeated in the document is placed where the model read it.

    Returns:
        The span, page and method, or ``Grounding(grounded=False)``.
    """
    if quote is None or not quote.strip() or not text:
        return _NOT_GROUNDED
    quote = quote.strip().strip('"').strip() or quote.strip()
    located = _locate(quote, text, window)
    if located is None:
        parts = [p for p in _ELLIPSIS.split(quote) if p.strip()]
        if len(parts) > 1 and all(len(p.strip()) >= _MIN_FRAGMENT for p in parts):
            spans = []
            after = 0
            for part in parts:
                hit = _locate(part.strip(), text, window if not spans else None, after)
                if hit is None:
                    return _NOT_GROUNDED
                spans.append(hit)
                after = hit[1]
            located = (spans[0][0], spans[-1][1], "fragments")
    if located is None:
        return _NOT_GROUNDED
    start, end, method = located
    return Grounding(True, start, end, page_of(page_offsets, start), method)
