"""The delimiters around the document in a prompt, and defusing them inside any other text.

The system message says that the text between ``<document>`` … ``</document>`` is data; so
every other text a prompt carries (instructions, hints, worked examples, project context
quoted by refinement) has such tags defused, and cannot close the data section early.
"""

from __future__ import annotations

import re

__all__ = ["DOCUMENT_CLOSE", "DOCUMENT_OPEN", "escape_delimiters", "wrap_document"]

DOCUMENT_OPEN = "<document>"
DOCUMENT_CLOSE = "</document>"

_DELIMITER_RE = re.compile(r"<\s*(/?)\s*document\b[^>]*>", re.IGNORECASE)


def escape_delimiters(text: str) -> str:
    """``text`` with any ``<document>``-like tag defused, so it cannot close the data section."""
    return _DELIMITER_RE.sub(lambda m: f"[{m.group(1)}document]", text)


def wrap_document(text: str) -> str:
    """The document text between the delimiters the system message announces."""
    return f"{DOCUMENT_OPEN}\n{escape_delimiters(text)}\n{DOCUMENT_CLOSE}"
