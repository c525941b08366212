"""DOCX text via python-docx: paragraphs and tables in body order, headings marked.

python-docx opens the package (ZIP, relationships, styles, core properties); the body is
then walked directly in its XML, child by child, because ``document.paragraphs`` and
``document.tables`` lose the order between them and skip content controls. Rendering:

* blocks (paragraphs, whole tables) are separated by a blank line;
* headings get Markdown ``#`` marks by level ("Title" counts as level 1), list items ``- ``;
* a table becomes one line per row with cells joined by `` | `` (merged cells appear once,
  empty rows are dropped, nested tables are flattened into their cell);
* text boxes follow the paragraph that anchors them; tracked insertions are kept and
  deletions dropped (the document as it reads after "accept all changes");
* headers, footers, footnotes, comments and field codes are not included.

DOCX has no fixed pages (they depend on the printer), so ``page_count`` is None and the
whole text is "page 1".
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any, Final

import docx
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from docx.opc.exceptions import PackageNotFoundError
from lxml import etree

from extraction.documents.model import STATUS_EMPTY, Extracted, ParseFailure

__all__ = ["MAX_UNZIPPED_BYTES", "parse_docx"]

#: A DOCX that would expand beyond this when unzipped is refused (a "zip bomb" guard).
MAX_UNZIPPED_BYTES: Final = 512 * 1024 * 1024

_CONTENT_TYPES: Final = "[Content_Types].xml"
_WORD_MAIN_CONTENT_TYPE: Final = b"wordprocessingml.document.main+xml"
_W: Final = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_MC: Final = "http://schemas.openxmlformats.org/markup-compatibility/2006"
_NS: Final = {"w": _W, "mc": _MC}
_P: Final = f"{{{_W}}}p"
_TBL: Final = f"{{{_W}}}tbl"
_SDT: Final = f"{{{_W}}}sdt"
_CUSTOM_XML: Final = f"{{{_W}}}customXml"
_VAL: Final = f"{{{_W}}}val"
_RUN_PIECES: Final = {
    f"{{{_W}}}t": None,  # the text itself
    f"{{{_W}}}tab": "\t",
    f"{{{_W}}}br": "\n",
    f"{{{_W}}}cr": "\n",
    f"{{{_W}}}noBreakHyphen": "-",
}
# Runs of this paragraph (not of a text box nested in it; mc:Fallback duplicates mc:Choice).
_RUN_CONTENT: Final = etree.XPath(
    ".//w:r[count(ancestor::w:txbxContent) = $depth][not(ancestor::mc:Fallback)]"
    "/*[self::w:t or self::w:tab or self::w:br or self::w:cr or self::w:noBreakHyphen]",
    namespaces=_NS,
)
_TEXT_BOXES: Final = etree.XPath(
    ".//w:txbxContent[count(ancestor::w:txbxContent) = $depth][not(ancestor::mc:Fallback)]",
    namespaces=_NS,
)
_DEPTH: Final = etree.XPath("count(ancestor::w:txbxContent)", namespaces=_NS)
_ROWS: Final = etree.XPath("./w:tr | ./w:sdt/w:sdtContent/w:tr | ./w:customXml/w:tr",
                           namespaces=_NS)
_CELLS: Final = etree.XPath("./w:tc | ./w:sdt/w:sdtContent/w:tc | ./w:customXml/w:tc",
                            namespaces=_NS)
_STYLE_ID: Final = etree.XPath("string(./w:pPr/w:pStyle/@w:val)", namespaces=_NS)
_OUTLINE: Final = etree.XPath("string(./w:pPr/w:outlineLvl/@w:val)", namespaces=_NS)
_HAS_NUMBERING: Final = etree.XPath("boolean(./w:pPr/w:numPr/w:numId)", namespaces=_NS)
_HEADING_NAME_RE: Final = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)
_SPACES_RE: Final = re.compile(r"\s+")
_CONTENT_TYPE_RE: Final = re.compile(r"content type is '([^']+)'")
_CORE_FIELDS: Final = ("title", "author", "subject", "keywords", "category", "comments",
                       "last_modified_by", "language", "created", "modified")


def parse_docx(data: bytes) -> Extracted:
    """Extract the body text of a DOCX file in reading order.

    Args:
        data: Raw DOCX bytes.

    Returns:
        The text as a single page, with core properties (title, author, dates) as metadata.

    Raises:
        ParseFailure: For damaged files, ZIPs that are not Word documents, oversized
            archives (failed) and documents without text (empty).
    """
    _check_archive(data)
    try:
        document = docx.Document(io.BytesIO(data))
    except PackageNotFoundError as exc:
        raise ParseFailure("corrupt DOCX: not a Word document package "
                           "(the ZIP has no Word main part)") from exc
    except etree.XMLSyntaxError as exc:
        raise ParseFailure(f"corrupt DOCX: the document XML is damaged ({exc})") from exc
    except ValueError as exc:
        content_type = _CONTENT_TYPE_RE.search(str(exc))
        if content_type is None:
            raise ParseFailure(f"corrupt DOCX: {_plain(exc)}") from exc
        raise ParseFailure(
            f"not a plain Word .docx document (its content type is '{content_type.group(1)}'; "
            "macro-enabled .docm and template .dotx files are not supported — open it in "
            "Word and save it as .docx)") from exc
    except KeyError as exc:
        raise ParseFailure(f"corrupt DOCX: a required part is missing ({_plain(exc)})") from exc
    metadata = _core_properties(document)
    styles = _StyleTable(document.styles.element)
    blocks = list(_render_blocks(document.element.body, styles))
    text = "\n\n".join(blocks)
    if not text.strip():
        raise ParseFailure("no text: the DOCX has no paragraphs or table cells with text "
                           "(it may hold only images)", status=STATUS_EMPTY, metadata=metadata)
    return Extracted(text=text, page_offsets=[0], page_count=None, metadata=metadata)


def _check_archive(data: bytes) -> None:
    """Fail early, with a clear reason, on broken ZIPs, non-Word ZIPs and zip bombs."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            names = {info.filename for info in infos}
            content_types = (archive.read(_CONTENT_TYPES) if _CONTENT_TYPES in names
                             else b"")
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ParseFailure("corrupt DOCX: not a readable ZIP archive (the file is truncated "
                           f"or damaged: {exc})") from exc
    # Word always writes word/...; the content types name the main part for other producers.
    if not any(name.startswith("word/") for name in names) \
            and _WORD_MAIN_CONTENT_TYPE not in content_types:
        raise ParseFailure("corrupt DOCX: the ZIP archive holds no Word document "
                           "(no word/ folder inside)")
    unzipped = sum(info.file_size for info in infos)
    if unzipped > MAX_UNZIPPED_BYTES:
        raise ParseFailure(f"DOCX would expand to {unzipped // (1024 * 1024)} MB when "
                           f"unzipped, over the {MAX_UNZIPPED_BYTES // (1024 * 1024)} MB "
                           "safety limit")


class _StyleTable:
    """Heading level and list-ness per paragraph style id, resolved once per document.

    Styles are read lazily: Word's default template defines ~160 styles and a document
    uses a handful, so reading them all would cost more than the rest of a short memo.
    """

    def __init__(self, styles_element: Any) -> None:
        self._elements: dict[str, Any] = {}
        for style in styles_element.iterfind(f"{{{_W}}}style"):
            style_id = style.get(f"{{{_W}}}styleId")
            if style_id is not None:
                self._elements.setdefault(style_id, style)
        self._raw: dict[str, tuple[str, str | None, int | None, bool]] = {}
        self._cache: dict[str, tuple[int | None, bool]] = {}

    def lookup(self, style_id: str) -> tuple[int | None, bool]:
        """Return (heading level or None, is a list style) for a style id."""
        if style_id not in self._cache:
            self._cache[style_id] = self._resolve(style_id)
        return self._cache[style_id]

    def _read(self, style_id: str) -> tuple[str, str | None, int | None, bool] | None:
        """(name, based on, outline level, numbered) of a defined style, else None."""
        if style_id not in self._raw:
            style = self._elements.get(style_id)
            if style is None:
                return None
            name = _child_val(style, "name") or style_id
            ppr = style.find(f"{{{_W}}}pPr")
            outline = _child_val(ppr, "outlineLvl") if ppr is not None else None
            numbered = ppr is not None and ppr.find(f"{{{_W}}}numPr") is not None
            self._raw[style_id] = (name, _child_val(style, "basedOn"),
                                   _outline_level(outline), numbered)
        return self._raw[style_id]

    def _resolve(self, style_id: str) -> tuple[int | None, bool]:
        seen: set[str] = set()
        current: str | None = style_id
        while current and current not in seen:
            raw = self._read(current)
            if raw is None:
                break
            seen.add(current)
            name, based_on, outline, numbered = raw
            level = _heading_level_from_name(name) or outline
            is_list = numbered or name.lower().startswith(("list bullet", "list number"))
            if level is not None or is_list:
                return level, is_list
            current = based_on
        return None, False


def _render_blocks(container: Any, styles: _StyleTable) -> Iterator[str]:
    """Yield the rendered text of each block-level child, in body order."""
    for child in container:
        tag = child.tag
        if tag == _P:
            yield from _render_paragraph(child, styles)
        elif tag == _TBL:
            table = _render_table(child)
            if table:
                yield table
        elif tag == _SDT:
            content = child.find(f"{{{_W}}}sdtContent")
            if content is not None:
                yield from _render_blocks(content, styles)
        elif tag == _CUSTOM_XML:
            yield from _render_blocks(child, styles)


def _render_paragraph(paragraph: Any, styles: _StyleTable) -> Iterator[str]:
    """Yield the paragraph (with heading/list marker) and then any text boxes it anchors."""
    depth = int(_DEPTH(paragraph))
    text = _paragraph_text(paragraph, depth).strip()
    if text:
        level, is_list = styles.lookup(_STYLE_ID(paragraph))
        level = _outline_level(_OUTLINE(paragraph)) or level
        if level is not None:
            text = "#" * level + " " + text
        elif is_list or _HAS_NUMBERING(paragraph):
            text = "- " + text
        yield text
    for box in _TEXT_BOXES(paragraph, depth=depth):
        yield from _render_blocks(box, styles)


def _paragraph_text(paragraph: Any, depth: int) -> str:
    pieces = []
    for element in _RUN_CONTENT(paragraph, depth=depth):
        fixed = _RUN_PIECES.get(element.tag)
        pieces.append((element.text or "") if fixed is None else fixed)
    return "".join(pieces).replace("\x00", "")


def _render_table(table: Any) -> str:
    """Render a table as lines of ``cell | cell``; merged cells are one w:tc in the XML."""
    lines = []
    for row in _ROWS(table):
        cells = [_cell_text(cell) for cell in _CELLS(row)]
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)


def _cell_text(cell: Any) -> str:
    """All text of a cell (nested tables included) on one line."""
    depth = int(_DEPTH(cell))
    parts = [_paragraph_text(p, depth) for p in cell.iter(_P)
             if int(_DEPTH(p)) == depth]
    return _SPACES_RE.sub(" ", " ".join(parts)).strip()


def _core_properties(document: Any) -> dict[str, Any]:
    """Read docProps/core.xml if present (python-docx would invent defaults otherwise)."""
    try:
        document.part.package.part_related_by(RT.CORE_PROPERTIES)
    except KeyError:
        return {}
    try:
        properties = document.core_properties
        metadata: dict[str, Any] = {}
        for field in _CORE_FIELDS:
            value = getattr(properties, field, None)
            if isinstance(value, datetime | date):
                metadata[field] = value.isoformat()
            elif isinstance(value, str) and value.strip():
                metadata[field] = value.replace("\x00", "").strip()
        return metadata
    except Exception:  # noqa: BLE001 - bad metadata must not fail a readable document
        return {}


def _child_val(element: Any, name: str) -> str | None:
    child = element.find(f"{{{_W}}}{name}")
    return None if child is None else child.get(_VAL)


def _outline_level(value: str | None) -> int | None:
    """Word's outline level is 0-based and 9 means body text."""
    if value and value.isdigit() and int(value) < 9:
        return int(value) + 1
    return None


def _heading_level_from_name(name: str) -> int | None:
    if name.lower() == "title":
        return 1
    match = _HEADING_NAME_RE.match(name)
    return int(match.group(1)) if match else None


def _plain(exc: BaseException) -> str:
    text = str(exc).strip().strip("'\"")
    return text or type(exc).__name__
