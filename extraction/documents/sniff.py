"""Recognise what a file really is from its first bytes, whatever its name says.

Users rename files, download HTML error pages as ``report.pdf`` and save Excel sheets as
``.docx``. Sniffing lets a parser say *what the file looks like* instead of a library's
cryptic error, so the user knows which file to fix and how.
"""

from __future__ import annotations

import io
import zipfile
from typing import Final

__all__ = ["KIND_DESCRIPTIONS", "KIND_MIME", "describe_kind", "looks_like_text", "sniff_kind"]

#: Human wording for each kind returned by `sniff_kind`, used as "it looks like <...>".
KIND_DESCRIPTIONS: Final[dict[str, str]] = {
    "empty": "an empty file",
    "pdf": "a PDF",
    "docx": "a Word DOCX document (ZIP)",
    "xlsx": "an Excel XLSX workbook (ZIP)",
    "pptx": "a PowerPoint PPTX presentation (ZIP)",
    "opendocument": "an OpenDocument file (ZIP)",
    "epub": "an EPUB e-book (ZIP)",
    "zip": "a ZIP archive",
    "office-encrypted": "a password-protected Microsoft Office file",
    "ole": "a legacy Microsoft Office file (.doc/.xls/.ppt)",
    "rtf": "an RTF document",
    "html": "an HTML page",
    "xml": "an XML file",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gif": "a GIF image",
    "tiff": "a TIFF image",
    "gzip": "a gzip archive",
    "text": "plain text",
    "binary": "binary data",
}

#: MIME type of each kind, for `ParsedDocument.mime`.
KIND_MIME: Final[dict[str, str]] = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "opendocument": "application/vnd.oasis.opendocument",
    "epub": "application/epub+zip",
    "zip": "application/zip",
    "office-encrypted": "application/x-ole-storage",
    "ole": "application/x-ole-storage",
    "rtf": "application/rtf",
    "html": "text/html",
    "xml": "application/xml",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "tiff": "image/tiff",
    "gzip": "application/gzip",
    "text": "text/plain",
    "binary": "application/octet-stream",
}

_OLE_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Encrypted OOXML files (a .docx with a password) are OLE containers holding this stream.
_ENCRYPTED_PACKAGE: Final = "EncryptedPackage".encode("utf-16-le")
_SIMPLE_MAGIC: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\x1f\x8b", "gzip"),
    (b"{\\rtf", "rtf"),
)
_TEXT_BOMS: Final = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_SAMPLE: Final = 8192
# Control bytes that never occur in real text (tab, LF, VT, FF, CR and ESC are allowed).
_BINARY_BYTES: Final = bytes(set(range(32)) - {9, 10, 11, 12, 13, 27}) + b"\x7f"


def sniff_kind(data: bytes) -> str:
    """Guess what ``data`` is from magic numbers and a short look at its content.

    Cheap by design (the first 8 KB, plus the ZIP directory for ZIP files) so it can run on
    every file of a large batch before the real parser.

    Args:
        data: The raw file content.

    Returns:
        A key of `KIND_DESCRIPTIONS`, e.g. "pdf", "docx", "zip", "text" or "binary".
    """
    if not data:
        return "empty"
    head = data[:_SAMPLE]
    if head.lstrip(b"\x00\t\n\r\f ").startswith(b"%PDF-"):
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(data)
    if head.startswith(_OLE_MAGIC):
        return "office-encrypted" if _ENCRYPTED_PACKAGE in data else "ole"
    for magic, kind in _SIMPLE_MAGIC:
        if head.startswith(magic):
            return kind
    if not looks_like_text(head):
        return "binary"
    return _markup_kind(head)


def looks_like_text(sample: bytes) -> bool:
    """Say whether a byte sample is plausibly text in some encoding.

    BOM-marked text is text; otherwise NUL and other control bytes give binary data away
    (they are rare in every single-byte text encoding and absent from UTF-8 text).
    """
    if sample.startswith(_TEXT_BOMS) or not sample:
        return True
    if b"\x00" in sample:
        return False
    binary = len(sample) - len(sample.translate(None, _BINARY_BYTES))
    return binary <= len(sample) // 100


def describe_kind(kind: str) -> str:
    """Return the human wording for a sniffed kind ("a PDF", "a ZIP archive", ...)."""
    return KIND_DESCRIPTIONS.get(kind, kind)


def _zip_kind(data: bytes) -> str:
    """Tell DOCX/XLSX/PPTX/OpenDocument/EPUB apart from a plain ZIP by its member names."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            mimetype = archive.read("mimetype")[:100] if "mimetype" in names else b""
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError):
        return "zip"  # damaged: the format parser reports the details
    prefixes = {name.split("/", 1)[0] for name in names if "/" in name}
    if "word" in prefixes:
        return "docx"
    if "xl" in prefixes:
        return "xlsx"
    if "ppt" in prefixes:
        return "pptx"
    if mimetype.startswith(b"application/vnd.oasis.opendocument"):
        return "opendocument"
    if mimetype.startswith(b"application/epub"):
        return "epub"
    return "zip"


def _markup_kind(head: bytes) -> str:
    """Classify text as HTML, XML or plain text from its first non-blank characters."""
    start = head.lstrip(b"\xef\xbb\xbf\t\n\r ")[:512].lower()
    if start.startswith((b"<!doctype html", b"<html")) or b"<html" in start:
        return "html"
    if start.startswith(b"<?xml"):
        return "xml"
    return "text"
