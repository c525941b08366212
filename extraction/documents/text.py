"""Plain text and Markdown: find the encoding, normalise newlines, refuse binary data.

Order of trust: a byte-order mark wins (UTF-8, UTF-16, UTF-32); then strict UTF-8, which
almost never decodes non-UTF-8 data by accident; then charset-normalizer for legacy code
pages. charset-normalizer cannot tell Western code pages apart on short texts (French in
cp1252 comes back as cp1250 with equal scores), so among equally good guesses cp1252 wins —
the usual encoding of legacy documents in this tool's audience. Newlines become ``\\n`` so
offsets do not depend on the platform that wrote the file.
"""

from __future__ import annotations

import codecs
import re
from typing import Final

import charset_normalizer

from extraction.documents.model import STATUS_EMPTY, Extracted, ParseFailure

__all__ = ["decode_text", "parse_text"]

_BOMS: Final[tuple[tuple[bytes, str], ...]] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_PREFERRED: Final = ("cp1252", "utf_8", "latin_1")
_SCORE_TOLERANCE: Final = 0.01
# Characters that do not occur in text: C0 controls except tab/newlines/FF/ESC, DEL, C1.
_CONTROL_RE: Final = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f]")
_MAX_CONTROL_RATIO: Final = 0.01
_NON_ASCII_RE: Final = re.compile("[^\x00-\x7f]")
_UTF8_MAJORITY: Final = 10  # valid multi-byte characters needed per invalid byte


def parse_text(data: bytes) -> Extracted:
    """Decode a text/Markdown file into normalised text.

    Args:
        data: Raw file content (non-empty).

    Returns:
        The text as one page, with the detected encoding in the metadata.

    Raises:
        ParseFailure: "not a text file" for binary data; empty for whitespace-only files.
    """
    text, encoding, had_bom = decode_text(data)
    text = normalise_newlines(text)
    metadata: dict[str, object] = {"encoding": encoding}
    if had_bom:
        metadata["bom"] = True
    if not text.strip():
        raise ParseFailure("no text: the file contains only whitespace",
                           status=STATUS_EMPTY, metadata=metadata)
    return Extracted(text=text, page_offsets=[0], page_count=None, metadata=metadata)


def decode_text(data: bytes) -> tuple[str, str, bool]:
    """Decode bytes of unknown encoding.

    Returns:
        (text, encoding name as Python spells it, whether a BOM was present). The BOM is not
        part of the text.

    Raises:
        ParseFailure: If the bytes are not text in any plausible encoding.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            # A BOM is a strong claim; a few bad bytes after it become U+FFFD, not a failure.
            text = data[len(bom):].decode(encoding, errors="replace")
            return _checked(text), encoding, True
    if b"\x00" not in data:
        try:
            return _checked(data.decode("utf-8")), "utf-8", False
        except UnicodeDecodeError:
            mostly_utf8 = _mostly_utf8(data)
            if mostly_utf8 is not None:
                return _checked(mostly_utf8), "utf-8", False
    encoding = _guess_legacy_encoding(data)
    if encoding is None:
        raise ParseFailure("not a text file: the content is binary data, not text "
                           "in any known encoding")
    text = data.decode(encoding, errors="replace")
    return _checked(text), codecs.lookup(encoding).name, False


def normalise_newlines(text: str) -> str:
    """Turn CRLF and lone CR into LF, and drop NUL characters (PostgreSQL rejects them)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


def _guess_legacy_encoding(data: bytes) -> str | None:
    """Ask charset-normalizer, breaking ties in favour of the Western code pages."""
    results = list(charset_normalizer.from_bytes(data))
    if not results:
        return None
    best = results[0]
    ties = [r for r in results
            if r.chaos <= best.chaos + _SCORE_TOLERANCE
            and r.coherence >= best.coherence - _SCORE_TOLERANCE]
    tied_names = {codecs.lookup(r.encoding).name for r in ties}
    for preferred in _PREFERRED:
        if codecs.lookup(preferred).name in tied_names:
            return preferred
    if best.encoding.startswith(("utf_16", "utf_32")) and b"\x00" not in data:
        # Without a BOM and without NUL bytes this is a single-byte text misread as UTF-16.
        return "cp1252" if _decodes(data, "cp1252") else None
    if best.encoding not in ("utf_8",) and _decodes(data, "cp1252") \
            and data.decode(best.encoding, errors="replace") == data.decode("cp1252"):
        return "cp1252"  # same text either way: report the familiar name
    return best.encoding


def _mostly_utf8(data: bytes) -> str | None:
    """Decode UTF-8 with a few stray bytes (e.g. one pasted cp1252 character) as UTF-8.

    A legacy-encoded file has about one invalid UTF-8 sequence per accented letter; a
    UTF-8 file with damage has many valid multi-byte characters per invalid byte. Only the
    latter is decoded here (bad bytes become U+FFFD); the rest goes to detection.
    """
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    valid_multibyte = len(_NON_ASCII_RE.findall(text)) - bad
    return text if valid_multibyte >= _UTF8_MAJORITY * bad else None


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _checked(text: str) -> str:
    """Reject decoded 'text' that is full of control characters, i.e. binary data."""
    text = text.removeprefix("\ufeff")
    controls = len(_CONTROL_RE.findall(text))
    if controls > 1 + len(text) * _MAX_CONTROL_RATIO:  # one stray control char is tolerated
        raise ParseFailure("not a text file: the content is binary data "
                           f"({controls} control characters in {len(text)})")
    return text
