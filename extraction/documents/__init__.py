"""Turn PDF, DOCX, text and Markdown files into text plus a page map — pure functions.

No database and no Prefect here: `parse_document` takes a path, `parse_bytes` takes bytes,
and both return a `ParsedDocument` that never hides a failure and never raises for a bad
file. Other modules store it (ingest) and point into its text (grounding).

Page separator: a PDF's page texts are joined with ``"\\n\\f\\n"`` (`PAGE_SEPARATOR`). The
form feed is the traditional page-break character (pdftotext emits it), never occurs inside
a page text here, and is whitespace to the quote matcher, so a quote that runs across a page
break is still found. ``page_offsets[i]`` is where page ``i + 1`` starts in ``text``;
`page_for_offset` maps any offset back to its page, with separator characters counted on the
page before. DOCX and text files have no pages: ``page_count`` is None and
``page_offsets == [0]``.

Layout of the package: ``model`` (result type, page map), ``sniff`` (what the bytes really
are), ``pdf`` / ``word`` / ``text`` (one format each), ``core`` (reading, checks, dispatch).
"""

from extraction.documents.core import (
    SUPPORTED_EXTENSIONS,
    format_size,
    parse_bytes,
    parse_document,
)
from extraction.documents.model import (
    PAGE_SEPARATOR,
    STATUS_EMPTY,
    STATUS_FAILED,
    STATUS_OK,
    ParsedDocument,
    ParseStatus,
    page_for_offset,
)
from extraction.documents.sniff import describe_kind, sniff_kind

__all__ = [
    "PAGE_SEPARATOR",
    "STATUS_EMPTY",
    "STATUS_FAILED",
    "STATUS_OK",
    "SUPPORTED_EXTENSIONS",
    "ParseStatus",
    "ParsedDocument",
    "describe_kind",
    "format_size",
    "page_for_offset",
    "parse_bytes",
    "parse_document",
    "sniff_kind",
]
