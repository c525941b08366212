"""Stored documents: list, count, find, show page by page, remove — service functions.

The read side of ingest (``extraction.ingest`` writes the rows). Listing never loads the
document texts (they can be megabytes each); their lengths are computed by the database.
A document is found by its full id or by a unique prefix of at least 6 hex digits, the
short form that tables show.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any, Final

from sqlalchemy import String, cast, func, inspect, select
from sqlalchemy.orm import Session, defer

from extraction import codebook
from extraction.documents import PAGE_SEPARATOR
from extraction.errors import NotFoundError, ValidationError
from extraction.models import Document, Extraction, ParseStatus, Project

__all__ = [
    "PagePreview",
    "STATUSES",
    "count_documents",
    "document_to_dict",
    "get_document",
    "list_documents",
    "page_previews",
    "page_text",
    "remove_document",
    "status_counts",
]

#: The parse statuses a document can have, for filters and messages.
STATUSES: Final = tuple(status.value for status in ParseStatus)
_MIN_PREFIX: Final = 6


@dataclass(frozen=True)
class PagePreview:
    """One page of a document: where it sits in the text and how it begins."""

    page: int
    start: int
    end: int
    characters: int
    preview: str


def _status(value: str | ParseStatus | None) -> ParseStatus | None:
    if value is None or isinstance(value, ParseStatus):
        return value
    try:
        return ParseStatus(value.strip().lower())
    except ValueError as exc:
        raise ValidationError(
            f"unknown status '{value}'; use one of {', '.join(STATUSES)}", field="status"
        ) from exc


def _filtered(query: Any, project: Project, status: ParseStatus | None) -> Any:
    query = query.where(Document.project_id == project.id)
    return query if status is None else query.where(Document.parse_status == status)


def list_documents(session: Session, project_ref: str | uuid.UUID | Project, *,
                   status: str | ParseStatus | None = None, limit: int = 50,
                   offset: int = 0) -> list[Document]:
    """A project's documents by filename, one page at a time, texts not loaded.

    Raises:
        NotFoundError: Unknown project. ValidationError: bad status, limit or offset.
    """
    if limit < 1 or offset < 0:
        raise ValidationError("limit must be ≥ 1 and offset ≥ 0", field="limit")
    project = _project(session, project_ref)
    query = _filtered(select(Document), project, _status(status)).options(
        defer(Document.text)).order_by(Document.filename, Document.id).limit(limit).offset(offset)
    return list(session.scalars(query))


def count_documents(session: Session, project_ref: str | uuid.UUID | Project, *,
                    status: str | ParseStatus | None = None) -> int:
    """How many documents the project has (with ``status``, if given)."""
    project = _project(session, project_ref)
    query = _filtered(select(func.count(Document.id)), project, _status(status))
    return session.scalar(query) or 0


def status_counts(session: Session, project_ref: str | uuid.UUID | Project) -> dict[str, int]:
    """Documents per parse status, every status present (zero when none)."""
    project = _project(session, project_ref)
    rows = session.execute(
        select(Document.parse_status, func.count(Document.id))
        .where(Document.project_id == project.id).group_by(Document.parse_status)
    ).tuples().all()
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status.value: n for status, n in rows})
    return counts


def get_document(session: Session, ref: str | uuid.UUID, *,
                 project: str | uuid.UUID | Project | None = None) -> Document:
    """A document by id or unique id prefix (≥ 6 hex digits), optionally within a project.

    Raises:
        NotFoundError: No such document. ValidationError: a prefix matching several.
    """
    text = str(ref).strip().lower()
    scope = _project(session, project) if project is not None else None
    document: Document | None = None
    try:
        document = session.get(Document, uuid.UUID(text))
    except ValueError:
        prefix = text.replace("-", "")
        if len(prefix) >= _MIN_PREFIX and all(c in "0123456789abcdef" for c in prefix):
            hex_id = func.replace(cast(Document.id, String), "-", "")
            query = select(Document).where(hex_id.like(prefix + "%"))
            if scope is not None:
                query = query.where(Document.project_id == scope.id)
            found = list(session.scalars(query.limit(2)))
            if len(found) > 1:
                raise ValidationError(
                    f"document id prefix '{ref}' matches more than one document; give more "
                    "digits", field="document") from None
            document = found[0] if found else None
    if document is None or (scope is not None and document.project_id != scope.id):
        where = f" in project '{scope.name}'" if scope is not None else ""
        hint = "" if len(text.replace("-", "")) >= _MIN_PREFIX else \
            f" (give the full id or at least {_MIN_PREFIX} of its first hex digits)"
        raise NotFoundError(f"no document with id '{ref}'{where}{hint}", instance=str(ref))
    return document


def remove_document(session: Session, ref: str | uuid.UUID) -> dict[str, Any]:
    """Delete a document and its extractions (their feedback goes with them).

    Returns:
        What was removed: id, filename, project and the number of extractions.
    """
    document = get_document(session, ref)
    extractions = session.scalar(
        select(func.count(Extraction.id)).where(Extraction.document_id == document.id)) or 0
    removed = {"id": str(document.id), "filename": document.filename,
               "project": document.project.name, "extractions_removed": extractions}
    session.delete(document)
    session.flush()
    return removed


def page_text(document: Document, page: int) -> str:
    """The full text of one page (1-based) of an ok document.

    Raises:
        ValidationError: The document has no text, or no such page.
    """
    offsets = list(document.page_offsets or [])
    if not offsets or document.text is None:
        raise ValidationError(
            f"document '{document.filename}' has no text ({_describe(document)})",
            field="page")
    if not 1 <= page <= len(offsets):
        raise ValidationError(
            f"page {page} does not exist; '{document.filename}' has {len(offsets)} "
            f"page{'s' if len(offsets) != 1 else ''} of text", field="page")
    start = offsets[page - 1]
    end = offsets[page] - len(PAGE_SEPARATOR) if page < len(offsets) else len(document.text)
    return document.text[start:end]


def page_previews(document: Document, chars: int = 200) -> list[PagePreview]:
    """The beginning of every page (whitespace collapsed), with its span in the text."""
    offsets = list(document.page_offsets or [])
    if not offsets or document.text is None:
        return []
    previews: list[PagePreview] = []
    for number in range(1, len(offsets) + 1):
        start = offsets[number - 1]
        body = page_text(document, number)
        flat = " ".join(body.split())
        shown = flat if len(flat) <= chars else flat[:chars].rstrip() + "…"
        previews.append(PagePreview(number, start, start + len(body), len(body), shown))
    return previews


def document_to_dict(document: Document, *, previews: list[PagePreview] | None = None
                     ) -> dict[str, Any]:
    """A JSON-ready view of a document, without its text (``characters`` is its length)."""
    text_loaded = "text" not in inspect(document).unloaded
    data: dict[str, Any] = {
        "id": str(document.id),
        "project_id": str(document.project_id),
        "filename": document.filename,
        "source_path": document.source_path,
        "parse_status": document.parse_status.value,
        "parse_error": document.parse_error,
        "mime": document.mime,
        "size_bytes": document.size_bytes,
        "page_count": document.page_count,
        "pages_of_text": len(document.page_offsets or []),
        "characters": len(document.text or "") if text_loaded else None,
        "content_hash": document.content_hash,
        "metadata": document.doc_metadata or {},
        "created_at": document.created_at.isoformat() if document.created_at else None,
        "updated_at": document.updated_at.isoformat() if document.updated_at else None,
    }
    if previews is not None:
        data["pages"] = [asdict(p) for p in previews]
    return data


def _project(session: Session, ref: str | uuid.UUID | Project) -> Project:
    return ref if isinstance(ref, Project) else codebook.get_project(session, ref)


def _describe(document: Document) -> str:
    status = document.parse_status.value
    return f"{status}: {document.parse_error}" if document.parse_error else status
