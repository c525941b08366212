"""Store parsed files as Document rows: de-duplicated, one transaction per chunk.

De-duplication, by sha256 of the raw bytes, within a project:

* A file whose content the project already holds — whatever that row's status, ok, empty or
  failed — is skipped and counted as a duplicate, naming the document it duplicates. Within
  one batch the first file in discovery order wins. A truncated PDF ingested twice is
  therefore one failed row; its *corrected* version has new bytes, so it is a new document.
* A path whose earlier ingest left a failed or empty row is re-examined: if the file now
  holds other bytes (fixed, replaced, or readable at last), the earlier failed/empty row of
  that path is deleted and the new outcome stored. This is how an unreadable path (no hash:
  missing, permission denied, over the size limit) ingested twice keeps one row, with the
  latest reason, instead of piling up rows; and how fixing a broken file leaves only the good
  document. Rows that hold usable text (ok) are never deleted by an ingest: an edited file is
  a new document next to the old one, and `extractflow docs remove` removes the old one.

Before parsing, `find_known_files` hashes the files that have the size of one of the project's
ok documents and looks the hashes up, so re-ingesting a folder of 10,000 files costs reading,
not parsing, them — and a new folder is not read twice.

Each chunk is inserted in its own transaction (`store_chunk`), so a failure later in a batch
never loses what was stored before it. Two ingests racing on the same content hit the
unique (project, content_hash) constraint; the chunk is then rolled back and classified
again against what the other one stored.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from extraction.db import session_scope
from extraction.documents import STATUS_OK, ParsedDocument, parse_document
from extraction.ingest.summary import ChunkOutcome, DuplicateFile, FileProblem
from extraction.models import Document, ParseStatus

__all__ = ["Item", "KnownFile", "find_known_files", "store_parsed", "store_chunk", "document_row"]

_IN_BATCH: Final = 500  # values per IN (...) query
_INT32_MAX: Final = 2**31 - 1  # documents.size_bytes is INTEGER
_UNUSABLE: Final = (ParseStatus.FAILED, ParseStatus.EMPTY)


@dataclass(frozen=True, slots=True)
class KnownFile:
    """A file whose bytes match an ok document of the project: skipped without parsing."""

    filename: str
    source_path: str
    content_hash: str
    size_bytes: int


#: What a chunk holds on its way to the database.
Item = ParsedDocument | KnownFile


def find_known_files(session: Session, project_id: uuid.UUID, paths: Sequence[str], *,
                     max_bytes: int | None = None) -> dict[str, KnownFile]:
    """Return the files of ``paths`` whose content is already an ok document.

    Only files with the size of one of the project's ok documents are hashed (same bytes,
    same size), so a new folder is read once — by the parser — and a folder ingested again
    is read once here and never parsed. Files that cannot be read, are not regular files,
    or are over ``max_bytes`` are left for the parser, which explains the problem.
    """
    sizes: dict[str, int] = {}
    for path in paths:
        size = _regular_file_size(path, max_bytes)
        if size is not None:
            sizes[path] = size
    if not sizes:
        return {}
    known_sizes: set[int] = set()
    for batch in _batches(set(sizes.values())):
        known_sizes.update(session.scalars(
            select(Document.size_bytes).where(
                Document.project_id == project_id, Document.size_bytes.in_(batch),
                Document.parse_status == ParseStatus.OK).distinct()))
    hashes: dict[str, tuple[str, int]] = {}
    for path, size in sizes.items():
        digest = _hash_file(path) if size in known_sizes else None
        if digest is not None:
            hashes[path] = (digest, size)
    if not hashes:
        return {}
    known: set[str] = set()
    for batch in _batches({h for h, _ in hashes.values()}):
        known.update(session.scalars(
            select(Document.content_hash).where(
                Document.project_id == project_id, Document.content_hash.in_(batch),
                Document.parse_status == ParseStatus.OK)))
    return {path: KnownFile(os.path.basename(path), path, digest, size)
            for path, (digest, size) in hashes.items() if digest in known}


def store_parsed(session: Session, project_id: uuid.UUID, items: Sequence[Item], *,
                 max_bytes: int | None = None) -> ChunkOutcome:
    """Add one chunk's files to the project in the caller's transaction.

    Args:
        session: Open session; the caller commits.
        project_id: The project the documents belong to.
        items: Parsed files, and files already known by hash (`find_known_files`), in
            discovery order.
        max_bytes: Size limit used if a known file must be parsed after all (its twin was
            deleted meanwhile).

    Returns:
        The chunk's counts, problems and duplicates (see `extraction.ingest.summary`).
    """
    outcome = ChunkOutcome()
    if not items:
        return outcome
    stale = _stale_rows(session, project_id, items)
    stale_hashes = {digest for _, digest in stale.values() if digest}
    existing = {digest: name for digest, name in _existing(session, project_id, items).items()
                if digest not in stale_hashes}
    if stale:
        session.execute(delete(Document).where(Document.id.in_(list(stale))))
        outcome.replaced = len(stale)
    rows: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for item in items:
        outcome.files += 1
        outcome.bytes += item.size_bytes or 0
        digest = item.content_hash
        twin = (existing.get(digest) or seen.get(digest)) if digest else None
        if twin is not None:
            outcome.duplicates.append(DuplicateFile(_safe(item.filename),
                                                    _safe_opt(item.source_path), _safe(twin)))
            continue
        if isinstance(item, KnownFile):  # its twin vanished since it was hashed: parse it
            item = parse_document(item.source_path, max_bytes=max_bytes)
            digest = item.content_hash
        row = document_row(project_id, item)
        rows.append(row)
        if digest:
            seen[digest] = row["filename"]
        _count(outcome, item, row)
    if rows:
        session.execute(insert(Document), rows)
    outcome.added = len(rows)
    return outcome


def store_chunk(project_id: uuid.UUID, items: Sequence[Item], *, max_bytes: int | None = None,
                url: str | None = None, attempts: int = 3) -> ChunkOutcome:
    """Store one chunk in its own transaction, retrying if a concurrent ingest raced it.

    Raises:
        IntegrityError: If the chunk still clashes after ``attempts`` tries.
    """
    for attempt in Retrying(retry=retry_if_exception_type(IntegrityError),
                            stop=stop_after_attempt(attempts), reraise=True):
        with attempt, session_scope(url) as session:
            return store_parsed(session, project_id, items, max_bytes=max_bytes)
    raise AssertionError("unreachable")  # pragma: no cover - Retrying returns or raises


def document_row(project_id: uuid.UUID, parsed: ParsedDocument) -> dict[str, Any]:
    """The Document column values for one parsed file (text only when it is usable)."""
    ok = parsed.status == STATUS_OK
    size = parsed.size_bytes
    return {
        "id": uuid.uuid4(),
        "project_id": project_id,
        "filename": _safe(parsed.filename)[:500],
        "source_path": _safe_opt(parsed.source_path),
        "content_hash": parsed.content_hash,
        "mime": (parsed.mime or None) and parsed.mime[:100],
        # documents.size_bytes is a 32-bit INTEGER; a huge file refused by the size limit
        # keeps its size in the error message instead.
        "size_bytes": size if size is not None and size <= _INT32_MAX else None,
        "page_count": parsed.page_count,
        "text": parsed.text if ok else None,
        "page_offsets": list(parsed.page_offsets) if ok else [],
        "doc_metadata": dict(parsed.metadata),
        "parse_status": ParseStatus(parsed.status),
        "parse_error": _safe_opt(parsed.error),
    }


# ---------------------------------------------------------------- internals


def _count(outcome: ChunkOutcome, parsed: ParsedDocument, row: dict[str, Any]) -> None:
    if parsed.status == STATUS_OK:
        outcome.ok += 1
        outcome.pages += len(row["page_offsets"])
        return
    if parsed.status == "empty":
        outcome.empty += 1
    else:
        outcome.failed += 1
    outcome.problems.append(FileProblem(row["filename"], row["source_path"], parsed.status,
                                        row["parse_error"] or f"document is {parsed.status}"))


def _existing(session: Session, project_id: uuid.UUID, items: Sequence[Item]
              ) -> dict[str, str]:
    """content hash -> filename of the project's documents sharing a hash with ``items``."""
    found: dict[str, str] = {}
    hashes = {item.content_hash for item in items if item.content_hash}
    for batch in _batches(hashes):
        found.update(session.execute(
            select(Document.content_hash, Document.filename).where(
                Document.project_id == project_id, Document.content_hash.in_(batch))
        ).tuples().all())
    return found


def _stale_rows(session: Session, project_id: uuid.UUID, items: Sequence[Item]
                ) -> dict[uuid.UUID, tuple[str, str | None]]:
    """Failed/empty rows of the chunk's paths that the new content supersedes.

    Returns ``{row id: (source_path, content_hash)}``; a row whose path still holds the
    same bytes is not stale (the file is a duplicate of it).
    """
    current = {_safe(item.source_path): item.content_hash
               for item in items if item.source_path}
    stale: dict[uuid.UUID, tuple[str, str | None]] = {}
    for batch in _batches(set(current)):
        rows = session.execute(
            select(Document.id, Document.source_path, Document.content_hash).where(
                Document.project_id == project_id, Document.parse_status.in_(_UNUSABLE),
                Document.source_path.in_(batch))
        ).tuples().all()
        for row_id, path, digest in rows:
            if digest is None or digest != current.get(path):
                stale[row_id] = (path, digest)
    return stale


def _regular_file_size(path: str, max_bytes: int | None) -> int | None:
    """Size of a regular file within the limit; None when the parser should look."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or (max_bytes is not None and info.st_size > max_bytes):
        return None
    return info.st_size


def _hash_file(path: str) -> str | None:
    """sha256 of a file; None if it cannot be read (the parser will say why)."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def _batches(values: Iterable[Any]) -> Iterable[list[Any]]:
    ordered = sorted(values)
    for start in range(0, len(ordered), _IN_BATCH):
        yield ordered[start:start + _IN_BATCH]


def _safe(text: str) -> str:
    """Text the database can store: file names may hold undecodable bytes (surrogates)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _safe_opt(text: str | None) -> str | None:
    return None if text is None else _safe(text)
