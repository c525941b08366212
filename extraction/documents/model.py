"""The result type of every parser, and the page map that grounding relies on.

`ParsedDocument.text` is the single source of truth for character offsets: an evidence quote
found at ``text[start:end]`` is stored with those offsets, and `page_for_offset` turns an offset
into a 1-based page number through `ParsedDocument.page_offsets`. Offsets are Python ``str``
indices (Unicode code points), not bytes and not UTF-16 units.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "PAGE_SEPARATOR",
    "STATUS_EMPTY",
    "STATUS_FAILED",
    "STATUS_OK",
    "Extracted",
    "ParseFailure",
    "ParseStatus",
    "ParsedDocument",
    "page_for_offset",
]

ParseStatus = Literal["ok", "failed", "empty"]
STATUS_OK: Final = "ok"
STATUS_FAILED: Final = "failed"
STATUS_EMPTY: Final = "empty"

#: Put between the texts of two PDF pages. The form feed is the classic page-break character
#: (pdftotext uses it too), so the boundary stays visible to people, tools and the LLM; the
#: newlines around it keep the last line of one page and the first line of the next apart.
#: Page texts never contain a form feed themselves (they are replaced by newlines), so the
#: separator is unambiguous. Python's ``\s`` matches all three characters, which keeps
#: whitespace-tolerant quote matching working across page breaks.
PAGE_SEPARATOR: Final = "\n\f\n"


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """The outcome of parsing one file: its text and page map, or why there is none.

    Parsers never raise for bad input; a file that cannot be used comes back with
    ``status`` "failed" or "empty" and ``error`` saying, in plain words, what is wrong, so a
    batch of 10,000 files keeps going and the user can see and fix each problem.

    Attributes:
        filename: Base name of the file (what the user recognises).
        source_path: The path it was read from, or None for in-memory data.
        content_hash: sha256 hex digest of the raw bytes; None if the bytes were never read
            (missing file, over the size limit). Used to skip duplicates.
        mime: MIME type of what the content really is when known (sniffed), else a guess from
            the file name.
        size_bytes: Size of the raw file in bytes; None if it could not even be stat'ed.
        page_count: Number of PDF pages; None for formats without pages (DOCX, text).
        text: The extracted text. Every character offset elsewhere refers to this string.
        page_offsets: Start offset in ``text`` of each page (1 entry for DOCX/text, none for
            failed or empty documents).
        metadata: Title, author, dates, detected encoding, etc., where the format has them.
            Only JSON-safe values (str, int, bool, lists of those).
        status: "ok", "failed" or "empty".
        error: Why the document is failed/empty; None when ok.
    """

    filename: str
    source_path: str | None = None
    content_hash: str | None = None
    mime: str | None = None
    size_bytes: int | None = None
    page_count: int | None = None
    text: str = field(default="", repr=False)  # can be megabytes: keep logs readable
    page_offsets: list[int] = field(default_factory=list, repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)
    status: ParseStatus = STATUS_OK
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the document has usable text."""
        return self.status == STATUS_OK

    def page_for(self, offset: int) -> int:
        """Return the 1-based page holding character ``offset`` of `text`.

        Raises:
            ValueError: If the document has no pages or the offset is outside the text.
        """
        if offset > len(self.text):
            raise ValueError(f"offset {offset} is past the end of the text ({len(self.text)})")
        return page_for_offset(self.page_offsets, offset)

    def page_text(self, page: int) -> str:
        """Return the text of one page (1-based), without the page separator.

        Raises:
            ValueError: If ``page`` is not a page of this document.
        """
        if not 1 <= page <= len(self.page_offsets):
            raise ValueError(f"page {page} does not exist (the document has "
                             f"{len(self.page_offsets)} page(s) of text)")
        start = self.page_offsets[page - 1]
        if page == len(self.page_offsets):
            return self.text[start:]
        return self.text[start:self.page_offsets[page] - len(PAGE_SEPARATOR)]


def page_for_offset(page_offsets: Sequence[int], offset: int) -> int:
    """Map a character offset in a document's text to its 1-based page number.

    A binary search, so grounding thousands of quotes in a long PDF stays cheap. An offset
    that falls on a page separator belongs to the page before it.

    Args:
        page_offsets: `ParsedDocument.page_offsets` (ascending, first entry 0).
        offset: A character offset into `ParsedDocument.text`.

    Returns:
        The page number, starting at 1. Documents without pages (DOCX, text) always give 1.

    Raises:
        ValueError: If ``offset`` is negative or there are no pages (failed/empty document).
    """
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if not page_offsets:
        raise ValueError("the document has no pages of text (it was not parsed successfully)")
    return max(1, bisect_right(page_offsets, offset))


@dataclass(frozen=True, slots=True)
class Extracted:
    """What a format parser hands back on success (internal to the package)."""

    text: str
    page_offsets: list[int]
    page_count: int | None
    metadata: dict[str, Any]


class ParseFailure(Exception):
    """Raised inside format parsers to stop with a user-facing reason (internal).

    Args:
        message: Plain-words explanation shown to the user.
        status: "failed" (cannot be read) or "empty" (read fine, nothing to extract).
        metadata: Anything learnt before failing (e.g. page count, title) worth keeping.
    """

    def __init__(self, message: str, *, status: ParseStatus = STATUS_FAILED,
                 metadata: dict[str, Any] | None = None, page_count: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status: ParseStatus = status
        self.metadata = metadata or {}
        self.page_count = page_count
