"""PDF text via PyMuPDF, one page at a time, joined with `PAGE_SEPARATOR`.

Reading order: MuPDF's own block order (the order the producer drew the text, grouped into
blocks), not ``get_text(sort=True)``. Sorting by coordinates merges the two columns of a
two-column paper line by line and pads lines with runs of spaces; producer order keeps each
column together, which is what a reader and an evidence quote need. Ligatures (ﬁ, ﬂ) are
expanded and unusual whitespace becomes plain spaces, so quotes typed by an LLM match.

PyMuPDF is not thread-safe; every call into it holds one module lock. Parse in processes,
not threads, for parallelism (a thread pool still works, serialised).
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
from collections.abc import Iterator
from typing import Any, Final

from extraction.documents.model import (
    PAGE_SEPARATOR,
    STATUS_EMPTY,
    Extracted,
    ParseFailure,
)

__all__ = ["has_pdf_header", "parse_pdf"]

#: Optional packages ``import pymupdf`` loads when they are installed (PyMuPDF 2 depends on
#: them): pymupdf.layout loads an ONNX layout model at import, pymupdf4llm imports numpy.
#: We use neither (plain text extraction), so loading them is start-up time and memory spent
#: for nothing in every process that parses — each CLI command, each parse worker.
_UNUSED_EXTRAS: Final = ("pymupdf.layout", "pymupdf4llm")


@contextlib.contextmanager
def _without_unused_extras() -> Iterator[None]:
    """Hide the extras while PyMuPDF imports, unless something imported them already.

    They are hidden only during the import: the user's own ``import pymupdf4llm`` or
    ``import pymupdf.layout`` later in the process still works.
    """
    hidden = [name for name in _UNUSED_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # the import fails fast
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


with _without_unused_extras():
    import pymupdf

_LOCK: Final = threading.Lock()
# Without TEXT_PRESERVE_LIGATURES / TEXT_PRESERVE_WHITESPACE: ligatures are split into
# letters and exotic spaces normalised; unknown glyphs become U+FFFD rather than CID junk.
_TEXT_FLAGS: Final = pymupdf.TEXT_MEDIABOX_CLIP
_EOF_WINDOW: Final = 1024  # the PDF spec puts %%EOF in the last 1024 bytes
_TRAILING_SPACE_RE: Final = re.compile(r"[ \t]+\n")
_PDF_DATE_RE: Final = re.compile(
    r"^D?:?(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?\s*([Zz+\-])?(\d{2})?'?(\d{2})?'?$"
)
_METADATA_KEYS: Final = {
    "title": "title",
    "author": "author",
    "subject": "subject",
    "keywords": "keywords",
    "creator": "creator",
    "producer": "producer",
    "creationDate": "created",
    "modDate": "modified",
    "format": "format",
    "encryption": "encryption",
}


def has_pdf_header(data: bytes) -> bool:
    """True if ``%PDF-`` appears in the first 1024 bytes, where readers accept it."""
    return b"%PDF-" in data[:1024]


def parse_pdf(data: bytes) -> Extracted:
    """Extract the text of every page of a PDF.

    Args:
        data: Raw PDF bytes.

    Returns:
        Text with pages joined by `PAGE_SEPARATOR`, one offset per page, PDF metadata.

    Raises:
        ParseFailure: Password-protected, truncated or corrupt files (failed); files without
            any text layer (empty).
    """
    with _LOCK:
        try:
            return _parse_locked(data)
        finally:
            pymupdf.TOOLS.mupdf_warnings(reset=True)  # the store grows for ever otherwise


def _parse_locked(data: bytes) -> Extracted:
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # MuPDF raises several types for bad files
        raise ParseFailure(_unopenable_message(data, exc)) from exc
    with doc:
        if doc.needs_pass:
            raise ParseFailure(
                "password-protected PDF: it cannot be opened without its password; "
                "remove the protection and add the file again")
        if doc.is_repaired and not _has_eof_marker(data):
            raise ParseFailure(
                "truncated PDF: the file stops before its end marker (%%EOF), so pages are "
                "missing; it was probably cut off while downloading or copying")
        metadata = pdf_metadata(doc)
        return _extract_pages(doc, metadata)


def _extract_pages(doc: pymupdf.Document, metadata: dict[str, Any]) -> Extracted:
    """Read each page's text and build the joined text and page offsets in one pass."""
    page_count = doc.page_count
    if page_count == 0:
        if doc.is_repaired:
            raise ParseFailure("corrupt PDF: no pages can be found (the page tree is missing "
                               "or damaged)", metadata=metadata)
        raise ParseFailure("PDF has no pages", status=STATUS_EMPTY, metadata=metadata,
                           page_count=0)
    parts: list[str] = []
    offsets: list[int] = []
    blank_pages: list[int] = []
    position = 0
    for index in range(page_count):
        try:
            page_text = clean_page_text(doc.load_page(index).get_text("text", flags=_TEXT_FLAGS))
        except Exception as exc:  # a damaged page object
            raise ParseFailure(f"corrupt PDF: page {index + 1} of {page_count} cannot be read "
                               f"({exc})", metadata=metadata, page_count=page_count) from exc
        if index:
            parts.append(PAGE_SEPARATOR)
            position += len(PAGE_SEPARATOR)
        offsets.append(position)
        parts.append(page_text)
        position += len(page_text)
        if not page_text:
            blank_pages.append(index + 1)
    if len(blank_pages) == page_count:
        raise ParseFailure(
            f"no text layer — OCR is not supported ({_pages(page_count)} without extractable "
            "text; the PDF is probably scanned images)",
            status=STATUS_EMPTY, metadata=metadata, page_count=page_count)
    if blank_pages:
        metadata["pages_without_text"] = blank_pages
    if doc.is_repaired:
        metadata["repaired"] = True
    return Extracted(text="".join(parts), page_offsets=offsets, page_count=page_count,
                     metadata=metadata)


def clean_page_text(raw: str) -> str:
    """Normalise one page's text: LF newlines, no NUL/form feed, no trailing blanks."""
    if "\x00" in raw:
        raw = raw.replace("\x00", "")
    if "\r" in raw:
        raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    if "\f" in raw:
        raw = raw.replace("\f", "\n")  # keeps PAGE_SEPARATOR unambiguous
    return _TRAILING_SPACE_RE.sub("\n", raw).strip()


def pdf_metadata(doc: pymupdf.Document) -> dict[str, Any]:
    """Return the document information dictionary with readable keys and ISO dates."""
    result: dict[str, Any] = {}
    for key, value in (doc.metadata or {}).items():
        name = _METADATA_KEYS.get(key)
        if name is None or not isinstance(value, str):
            continue
        value = value.replace("\x00", "").strip()
        if not value:
            continue
        result[name] = pdf_date_to_iso(value) if name in ("created", "modified") else value
    return result


def pdf_date_to_iso(value: str) -> str:
    """Convert a PDF date ("D:20240102030405+01'00'") to ISO 8601; unknown forms unchanged."""
    match = _PDF_DATE_RE.match(value.strip())
    if not match:
        return value
    year, month, day, hour, minute, second, sign, tz_hour, tz_minute = match.groups()
    iso = year + (f"-{month}" if month else "") + (f"-{day}" if month and day else "")
    if month and day and hour:
        iso += f"T{hour}:{minute or '00'}:{second or '00'}"
        if sign in ("Z", "z"):
            iso += "Z"
        elif sign and tz_hour:
            iso += f"{sign}{tz_hour}:{tz_minute or '00'}"
    return iso


def _unopenable_message(data: bytes, exc: Exception) -> str:
    """Explain why MuPDF could not open the file, with its own diagnostics when it has any."""
    warnings = [line for line in pymupdf.TOOLS.mupdf_warnings().splitlines() if line.strip()]
    detail = "; ".join(dict.fromkeys(warnings[:3])) or str(exc) or type(exc).__name__
    if not _has_eof_marker(data):
        return ("truncated PDF: the file stops before its end marker (%%EOF) and cannot be "
                f"repaired; it was probably cut off while downloading or copying ({detail})")
    return f"corrupt PDF: the file is damaged and cannot be opened ({detail})"


def _has_eof_marker(data: bytes) -> bool:
    return b"%%EOF" in data[-_EOF_WINDOW:]


def _pages(count: int) -> str:
    return "1 page" if count == 1 else f"{count} pages"
