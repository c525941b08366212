"""Cut a document's text into pieces at evidence spans and page starts, for the review page.

Why here and not in the browser: stored offsets count Python ``str`` code points, while
JavaScript strings count UTF-16 units, so a document with one emoji before a quote would be
highlighted one character off if the page did the slicing. Cutting the text in Python keeps
the offsets exact, and the page only joins pieces with ``textContent`` (never as HTML).

The result is a flat list: an ``int`` is a page marker (the page that starts here), a list is
``[text]`` or ``[text, [span keys]]`` — a piece covered by several evidence spans (they may
overlap) carries every key. A span that cannot be drawn (offsets missing, reversed, empty or
outside the text) is left out and reported, so the page can mark its value as ungrounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Segmented", "clean_text", "segment"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str | None) -> str:
    """``text`` safe to write as UTF-8: lone surrogates (from bytes that were not UTF-8 when
    the text was stored) become U+FFFD. One code point for one keeps every offset valid."""
    if not text:
        return ""
    return _SURROGATE.sub("\ufffd", text)


@dataclass(frozen=True)
class Segmented:
    """The pieces of one document and which span keys could be drawn."""

    pieces: list[Any] = field(default_factory=list)
    drawn: frozenset[int] = frozenset()


def _drawable(start: Any, end: Any, length: int) -> bool:
    return (isinstance(start, int) and isinstance(end, int)
            and not isinstance(start, bool) and not isinstance(end, bool)
            and 0 <= start < end <= length)


def _page_starts(page_offsets: Sequence[Any] | None, length: int) -> dict[int, int]:
    """Offset → page number for pages 2…n; bad entries (not ints, out of order, past the
    end of the text) are skipped rather than trusted."""
    starts: dict[int, int] = {}
    last = 0
    for number, offset in enumerate(page_offsets or (), start=1):
        if number == 1 or not isinstance(offset, int) or isinstance(offset, bool):
            continue
        if last < offset <= length:
            starts[offset] = number
            last = offset
    return starts


def segment(
    text: str,
    spans: Iterable[tuple[int, Any, Any]],
    page_offsets: Sequence[Any] | None = None,
) -> Segmented:
    """Split ``text`` at every span edge and page start.

    Args:
        text: the document text (already passed through :func:`clean_text`).
        spans: ``(key, start, end)`` per evidence span; ``end`` is exclusive.
        page_offsets: start offset of each page (``Document.page_offsets``).

    Returns:
        The pieces in text order (see the module docstring) and the keys that were drawn.
    """
    length = len(text)
    good = [(key, start, end) for key, start, end in spans if _drawable(start, end, length)]
    pages = _page_starts(page_offsets, length)
    cuts = sorted({0, length, *pages, *(s for _, s, _ in good), *(e for _, _, e in good)})
    opening: dict[int, list[int]] = {}
    closing: dict[int, list[int]] = {}
    for key, start, end in good:
        opening.setdefault(start, []).append(key)
        closing.setdefault(end, []).append(key)
    pieces: list[Any] = []
    active: dict[int, None] = {}  # insertion-ordered set: keys in the order their spans open
    for i, cut in enumerate(cuts):
        for key in closing.get(cut, ()):
            active.pop(key, None)
        for key in opening.get(cut, ()):
            active[key] = None
        if cut in pages:
            pieces.append(pages[cut])
        if i + 1 < len(cuts):
            chunk = text[cut:cuts[i + 1]]
            pieces.append([chunk, list(active)] if active else [chunk])
    return Segmented(pieces=pieces, drawn=frozenset(key for key, _, _ in good))
