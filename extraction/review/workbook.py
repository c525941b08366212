"""The review workbook's shape: the contract between writing it and reading it back.

A review workbook (xlsx) round-trips: :mod:`extraction.review.workbook_export` writes a job's
results into it, a reviewer fills in verdicts, :mod:`extraction.review.workbook_import` reads
them back. Both sides use the sheet names and columns defined here, so they cannot drift apart.

The ``Review`` sheet has one row per extraction: document, variable, type, extracted value,
status, confidence, support (does the quote state the value?), evidence quote and page, then
three columns a reviewer fills in — *correct?* (a yes/no dropdown), *corrected value* (a dropdown of the categories for CATEGORY variables,
true/false for BOOLEAN; free text otherwise) and *comment*. Column A holds the extraction id,
which is how a row finds its extraction again on import.
"""

from __future__ import annotations

__all__ = [
    "COLUMNS",
    "COLUMN_NUMBER",
    "EDITABLE",
    "GUIDE_SHEET",
    "LISTS_SHEET",
    "REVIEW_SHEET",
]

REVIEW_SHEET = "Review"
LISTS_SHEET = "Lists"
GUIDE_SHEET = "How to review"

#: (key, header) of every column of the Review sheet, in order. Headers are checked on import.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("extraction_id", "extraction id"),
    ("document", "document"),
    ("variable", "variable"),
    ("type", "type"),
    ("value", "extracted value"),
    ("status", "status"),
    ("confidence", "confidence"),
    ("support", "support"),
    ("evidence", "evidence quote"),
    ("page", "page"),
    ("correct", "correct?"),
    ("corrected", "corrected value"),
    ("comment", "comment"),
)

#: Column key → 1-based column number on the Review sheet.
COLUMN_NUMBER: dict[str, int] = {key: index + 1 for index, (key, _) in enumerate(COLUMNS)}

#: The columns a reviewer fills in; every other column is locked.
EDITABLE: tuple[str, ...] = ("correct", "corrected", "comment")
