"""Entry points: read a file once, check it, hand it to the right format parser.

Checks run cheapest first so a batch of 10,000 files wastes no time on hopeless ones:
stat (missing, directory, permission) → extension → size limit → zero bytes → read once →
hash → sniff the content against the extension → parse. Every outcome is a
`ParsedDocument`; nothing here raises for a bad file.
"""

from __future__ import annotations

import errno
import hashlib
import mimetypes
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from extraction.documents.model import (
    STATUS_EMPTY,
    STATUS_FAILED,
    STATUS_OK,
    Extracted,
    ParsedDocument,
    ParseFailure,
)
from extraction.documents.pdf import has_pdf_header, parse_pdf
from extraction.documents.sniff import KIND_MIME, describe_kind, sniff_kind
from extraction.documents.text import parse_text
from extraction.documents.word import parse_docx

__all__ = ["SUPPORTED_EXTENSIONS", "format_size", "parse_bytes", "parse_document"]


@dataclass(frozen=True, slots=True)
class _Format:
    label: str  # "a PDF", used in "is not a PDF"
    mime: str
    parser: Callable[[bytes], Extracted]
    accepts: Callable[[str, bytes], bool]  # (sniffed kind, data) -> content fits the extension


_TEXT_LIKE_KINDS: Final = frozenset({"text", "html", "xml", "binary"})
_PDF: Final = _Format("PDF", "application/pdf", parse_pdf,
                      lambda kind, data: kind == "pdf" or has_pdf_header(data))
_DOCX: Final = _Format("DOCX (Word) document", KIND_MIME["docx"], parse_docx,
                       lambda kind, data: kind in ("docx", "zip"))
_TEXT: Final = _Format("text file", "text/plain", parse_text,
                       lambda kind, data: kind in _TEXT_LIKE_KINDS)
_MARKDOWN: Final = _Format("text file", "text/markdown", parse_text,
                           lambda kind, data: kind in _TEXT_LIKE_KINDS)
_FORMATS: Final[dict[str, _Format]] = {
    ".pdf": _PDF,
    ".docx": _DOCX,
    ".txt": _TEXT,
    ".md": _MARKDOWN,
    ".markdown": _MARKDOWN,
    ".text": _TEXT,
}

#: File extensions `parse_document` reads (compared case-insensitively).
SUPPORTED_EXTENSIONS: Final[tuple[str, ...]] = tuple(_FORMATS)

_HINTS: Final[dict[str, str]] = {
    "html": " — probably a saved web, login or error page instead of the document",
    "ole": "; open it in Word and save it as .docx",
    "rtf": "; open it in Word and save it as .docx or .pdf",
}
_OS_ERRORS: Final[dict[int, str]] = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "it is a directory",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENAMETOOLONG: "file name too long",
    errno.EIO: "input/output error (disk or network problem)",
}


def parse_document(path: Path | str, *, max_bytes: int | None = None) -> ParsedDocument:
    """Parse a PDF, DOCX, text or Markdown file into text plus a page map.

    The file is read exactly once; its sha256, sniffed type and text all come from the
    same bytes.

    Args:
        path: The file to read.
        max_bytes: Refuse files larger than this (checked before reading). None: no limit.

    Returns:
        A `ParsedDocument`; ``status`` says whether it is usable and ``error`` why not.
    """
    source = os.fspath(path)
    filename = os.path.basename(source.rstrip("/\\")) or source
    try:
        info = os.stat(source)
    except OSError as exc:
        return _failure(filename, source, _cannot_read(exc))
    if stat.S_ISDIR(info.st_mode):
        return _failure(filename, source, "cannot read file: it is a directory")
    if not stat.S_ISREG(info.st_mode):
        return _failure(filename, source,
                        "cannot read file: not a regular file (a pipe, socket or device)")
    early = _check_name_and_size(filename, source, info.st_size, max_bytes)
    if early is not None:
        return early
    try:
        with open(source, "rb") as handle:
            data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    except OSError as exc:
        return _failure(filename, source, _cannot_read(exc), size=info.st_size)
    if max_bytes is not None and len(data) > max_bytes:  # it grew after stat
        return _failure(filename, source, _too_large(len(data), max_bytes),
                        size=len(data))
    return _parse_data(data, filename, source)


def parse_bytes(data: bytes, filename: str, *, max_bytes: int | None = None,
                source_path: str | None = None) -> ParsedDocument:
    """Parse in-memory file content; ``filename`` decides the expected format.

    Args:
        data: The raw content (e.g. an upload or an object-store download).
        filename: Name whose extension says what the content should be.
        max_bytes: Refuse content larger than this. None: no limit.
        source_path: Where the bytes came from, recorded as-is.

    Returns:
        A `ParsedDocument`, exactly as `parse_document` would return for a file.
    """
    early = _check_name_and_size(filename, source_path, len(data), max_bytes)
    if early is not None:
        return early
    return _parse_data(bytes(data), filename, source_path)


def format_size(size: int) -> str:
    """Say a byte count the way people read it: "512 bytes", "3.4 KB", "12.3 MB".

    Binary units (1 MB = 1024 * 1024 bytes), the way size limits are usually written.
    """
    if size < 1024:
        return "1 byte" if size == 1 else f"{size} bytes"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            break
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def _check_name_and_size(filename: str, source: str | None, size: int,
                         max_bytes: int | None) -> ParsedDocument | None:
    """Refuse unsupported extensions, oversized files and empty files without reading."""
    if max_bytes is not None and max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0 or None, got {max_bytes}")
    extension = _extension(filename)
    if extension not in _FORMATS:
        shown = f"'{extension}'" if extension else "without an extension"
        return _failure(filename, source,
                        f"unsupported file type {shown} (supported: "
                        f"{', '.join(SUPPORTED_EXTENSIONS)})",
                        size=size, mime=mimetypes.guess_type(filename)[0])
    if max_bytes is not None and size > max_bytes:
        return _failure(filename, source, _too_large(size, max_bytes), size=size,
                        mime=_FORMATS[extension].mime)
    if size == 0:
        return ParsedDocument(filename=filename, source_path=source,
                              content_hash=hashlib.sha256(b"").hexdigest(),
                              mime=_FORMATS[extension].mime, size_bytes=0,
                              status=STATUS_EMPTY, error="empty file (0 bytes)")
    return None


def _parse_data(data: bytes, filename: str, source: str | None) -> ParsedDocument:
    """Hash, sniff and parse bytes whose name and size already passed the checks."""
    fmt = _FORMATS[_extension(filename)]
    content_hash = hashlib.sha256(data).hexdigest()
    common = {"filename": filename, "source_path": source, "content_hash": content_hash,
              "size_bytes": len(data)}
    if not data:
        return ParsedDocument(**common, mime=fmt.mime, status=STATUS_EMPTY,
                              error="empty file (0 bytes)")
    try:
        kind = sniff_kind(data)
        if not fmt.accepts(kind, data):
            return ParsedDocument(**common, mime=KIND_MIME.get(kind), status=STATUS_FAILED,
                                  error=_mismatch_message(filename, fmt, kind))
        extracted = fmt.parser(data)
    except ParseFailure as failure:
        return ParsedDocument(**common, mime=fmt.mime, page_count=failure.page_count,
                              metadata=failure.metadata, status=failure.status,
                              error=failure.message)
    except Exception as exc:  # noqa: BLE001 - one odd file must never stop a batch
        return ParsedDocument(**common, mime=fmt.mime, status=STATUS_FAILED,
                              error=f"could not parse this {fmt.label}: unexpected "
                                    f"{type(exc).__name__}: {exc}")
    return ParsedDocument(**common, mime=fmt.mime, page_count=extracted.page_count,
                          text=extracted.text, page_offsets=extracted.page_offsets,
                          metadata=extracted.metadata, status=STATUS_OK)


def _mismatch_message(filename: str, fmt: _Format, kind: str) -> str:
    if kind == "office-encrypted" and fmt is _DOCX:
        return ("password-protected DOCX: Word encrypts protected files, so the text cannot "
                "be read; remove the password in Word, save, and add the file again")
    return (f"file named '{filename}' is not a {fmt.label}: it looks like "
            f"{describe_kind(kind)}{_HINTS.get(kind, '')}")


def _failure(filename: str, source: str | None, error: str, *, size: int | None = None,
             mime: str | None = None) -> ParsedDocument:
    return ParsedDocument(filename=filename, source_path=source, size_bytes=size, mime=mime,
                          status=STATUS_FAILED, error=error)


def _too_large(size: int, max_bytes: int) -> str:
    return f"file is {format_size(size)}, over the {format_size(max_bytes)} limit"


def _cannot_read(exc: OSError) -> str:
    reason = _OS_ERRORS.get(exc.errno or -1) or (exc.strerror or str(exc)).lower()
    return f"cannot read file: {reason}"


def _extension(filename: str) -> str:
    return os.path.splitext(filename)[1].lower()
