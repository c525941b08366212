"""Build document fixtures (PDF, DOCX, text, broken files) at test time.

Nothing binary is committed: tests and benchmarks call these helpers to write files into a
temporary directory, so every fixture is visible as code and easy to vary. PDFs are made
with PyMuPDF, DOCX with python-docx.
"""

from __future__ import annotations

import io
import random
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import docx
import pymupdf

__all__ = [
    "Heading",
    "ListItem",
    "Table",
    "build_sample_corpus",
    "docx_bytes",
    "make_binary",
    "make_corrupt_docx",
    "make_docx",
    "make_docx_from_body_xml",
    "make_encrypted_office_stub",
    "make_image_only_pdf",
    "make_pdf",
    "make_text",
    "make_truncated_pdf",
    "make_two_column_pdf",
    "make_zip",
    "pdf_bytes",
    "rewrite_docx_content_type",
]

_PAGE_RECT = pymupdf.Rect(50, 50, 545, 792)
_DOCX_NAMESPACES = (
    'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" '
    'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
    'xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape" '
    'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" '
    'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
    'xmlns:v="urn:schemas-microsoft-com:vml" '
    'mc:Ignorable="wps"'
)


@dataclass(frozen=True)
class Heading:
    """A heading paragraph (level 0 = the "Title" style, 1-9 = "Heading N")."""

    text: str
    level: int = 1


@dataclass(frozen=True)
class ListItem:
    """A bulleted list paragraph ("List Bullet" style)."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table; ``rows`` are lists of cell texts. ``merge_first_row`` spans row 1's cells."""

    rows: Sequence[Sequence[str]]
    merge_first_row: bool = False
    nested: Mapping[tuple[int, int], Sequence[Sequence[str]]] = field(default_factory=dict)


Block = str | Heading | ListItem | Table


def pdf_bytes(pages: Sequence[str], *, metadata: Mapping[str, str] | None = None,
              encrypt_password: str | None = None, owner_password: str | None = None,
              fontsize: float = 11) -> bytes:
    """Return a PDF whose page ``i`` shows ``pages[i]`` (wrapped, Helvetica, Latin-1 only).

    Args:
        pages: Text of each page; "" makes a blank page.
        metadata: PyMuPDF metadata keys (title, author, subject, keywords, creationDate...).
        encrypt_password: If set, the PDF needs this password to open (AES-256).
        owner_password: If set alone, the PDF is encrypted with an empty user password:
            it opens without a password but carries permission restrictions.
        fontsize: Font size of the text.
    """
    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page()
        if text and page.insert_textbox(_PAGE_RECT, text, fontsize=fontsize) < 0:
            raise ValueError("page text does not fit on one page; split it")
    if metadata:
        doc.set_metadata(dict(metadata))
    options: dict[str, object] = {}
    if encrypt_password is not None or owner_password is not None:
        options = {
            "encryption": pymupdf.PDF_ENCRYPT_AES_256,
            "user_pw": encrypt_password or "",
            "owner_pw": owner_password or f"{encrypt_password}-owner",
            "permissions": pymupdf.PDF_PERM_PRINT,
        }
    data = doc.tobytes(garbage=1, **options)
    doc.close()
    return data


def make_pdf(path: Path, pages: Sequence[str], *, encrypt_password: str | None = None,
             owner_password: str | None = None,
             metadata: Mapping[str, str] | None = None) -> Path:
    """Write a text PDF with one entry of ``pages`` per page (see `pdf_bytes`)."""
    path.write_bytes(pdf_bytes(pages, metadata=metadata, encrypt_password=encrypt_password,
                               owner_password=owner_password))
    return path


def make_image_only_pdf(path: Path, pages: int = 1) -> Path:
    """Write a PDF whose pages hold only a raster image, like a scan without OCR."""
    doc = pymupdf.open()
    pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 64, 64), False)
    pixmap.clear_with(180)
    for _ in range(pages):
        page = doc.new_page()
        page.insert_image(pymupdf.Rect(72, 72, 400, 400), pixmap=pixmap)
    doc.save(path)
    doc.close()
    return path


def make_two_column_pdf(path: Path, left: Sequence[str], right: Sequence[str]) -> Path:
    """Write a one-page, two-column PDF; each column's lines are drawn top to bottom.

    The columns share baselines, so sorting text by coordinates would interleave them.
    """
    doc = pymupdf.open()
    page = doc.new_page()
    for x, lines in ((72, left), (320, right)):
        for index, line in enumerate(lines):
            page.insert_text((x, 100 + 14 * index), line, fontsize=11)
    doc.save(path)
    doc.close()
    return path


def make_truncated_pdf(path: Path, pages: Sequence[str], keep: float = 0.5) -> Path:
    """Write only the first ``keep`` fraction of a valid PDF (an interrupted download)."""
    data = pdf_bytes(pages)
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


def docx_bytes(paragraphs: Sequence[Block] = (), *, headings: Sequence[str] = (),
               tables: Sequence[Sequence[Sequence[str]]] = (),
               core: Mapping[str, str | datetime] | None = None) -> bytes:
    """Return a DOCX built from blocks, in the order given.

    Args:
        paragraphs: Blocks in body order: a str is a normal paragraph; `Heading`,
            `ListItem` and `Table` make those elements.
        headings: Convenience: level-1 headings written *before* ``paragraphs``.
        tables: Convenience: tables (rows of cells) written *after* ``paragraphs``.
        core: Core properties to set (title, author, subject, keywords, ...; created and
            modified as datetimes). The template's text defaults are cleared first.
    """
    document = docx.Document()
    _set_core_properties(document, core or {})
    blocks: list[Block] = [Heading(text) for text in headings]
    blocks += list(paragraphs)
    blocks += [Table(rows) for rows in tables]
    for block in blocks:
        _add_block(document, block)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_docx(path: Path, paragraphs: Sequence[Block] = (), *, headings: Sequence[str] = (),
              tables: Sequence[Sequence[Sequence[str]]] = (),
              core: Mapping[str, str | datetime] | None = None) -> Path:
    """Write a DOCX file (see `docx_bytes` for the arguments)."""
    path.write_bytes(docx_bytes(paragraphs, headings=headings, tables=tables, core=core))
    return path


def make_docx_from_body_xml(path: Path, body_xml: str, *,
                            core_properties: bool = True) -> Path:
    """Write a DOCX whose ``<w:body>`` content is ``body_xml`` (raw WordprocessingML).

    For constructs python-docx cannot author: content controls, tracked changes, text
    boxes. The ``w``, ``mc``, ``wps``, ``v`` and ``a`` prefixes are declared.

    Args:
        path: Target file.
        body_xml: Elements to place inside ``<w:body>``.
        core_properties: False drops docProps/core.xml and its relationship, as some
            generators do.
    """
    document_xml = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f"<w:document {_DOCX_NAMESPACES}><w:body>{body_xml}</w:body></w:document>"
    ).encode()
    replacements: dict[str, bytes | None] = {"word/document.xml": document_xml}
    data = _rewrite_zip(docx_bytes(["placeholder"], core={"title": "Body XML"}), replacements)
    if not core_properties:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            rels = archive.read("_rels/.rels").decode()
        rels = re.sub(r"<Relationship [^>]*core-properties[^>]*/>", "", rels)
        data = _rewrite_zip(data, {"docProps/core.xml": None, "_rels/.rels": rels.encode()})
    path.write_bytes(data)
    return path


def rewrite_docx_content_type(data: bytes, content_type: str) -> bytes:
    """Give a DOCX's main part another content type (e.g. macro-enabled .docm)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        types = archive.read("[Content_Types].xml").decode()
    types = types.replace(
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        content_type)
    return _rewrite_zip(data, {"[Content_Types].xml": types.encode()})


def make_text(path: Path, text: str, encoding: str = "utf-8", *,
              newline: str = "\n") -> Path:
    """Write ``text`` in ``encoding``; "utf-8-sig" adds a UTF-8 BOM, "utf-16" a UTF-16 BOM.

    Args:
        path: Target file.
        text: Content with ``\\n`` line ends.
        encoding: Any Python codec name.
        newline: Line end to write instead of ``\\n`` (e.g. "\\r\\n").
    """
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


def make_binary(path: Path, size: int = 4096, *, seed: int = 0) -> Path:
    """Write reproducible random bytes (binary garbage)."""
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def make_corrupt_docx(path: Path) -> Path:
    """Write a ZIP that has Word's structure but malformed word/document.xml."""
    reference = docx_bytes(["placeholder"])
    with zipfile.ZipFile(io.BytesIO(reference)) as archive:
        document_xml = archive.read("word/document.xml")
    cut = document_xml[: len(document_xml) // 2]  # ends mid-element
    path.write_bytes(_rewrite_zip(reference, {"word/document.xml": cut}))
    return path


def make_zip(path: Path, members: Mapping[str, bytes]) -> Path:
    """Write a ZIP archive with the given member names and contents."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    path.write_bytes(buffer.getvalue())
    return path


def make_encrypted_office_stub(path: Path) -> Path:
    """Write an OLE container naming an ``EncryptedPackage`` stream.

    This is how Word stores a password-protected .docx. The stub has the real signature
    and stream name but not a real encrypted payload — enough for detection tests.
    """
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    directory = "EncryptedPackage".encode("utf-16-le") + bytes(96)
    path.write_bytes(header + directory + bytes(1024))
    return path


def build_sample_corpus(directory: Path, count: int, *, seed: int = 0,
                        bad_fraction: float = 0.1) -> list[Path]:
    """Write ``count`` mixed documents (PDF, DOCX, TXT, MD, some bad) for benchmarks.

    Args:
        directory: Where to write (created if missing).
        count: Number of files.
        seed: Makes the corpus reproducible.
        bad_fraction: Share of broken or unsupported files among them.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    words = ("grant", "study", "patient", "budget", "policy", "sample", "outcome", "region",
             "method", "result", "council", "dose", "survey", "income", "school")
    paths: list[Path] = []
    for index in range(count):
        body = [" ".join(rng.choice(words) for _ in range(60)) for _ in range(rng.randint(1, 4))]
        if rng.random() < bad_fraction:
            paths.append(_bad_file(directory, index, rng))
            continue
        kind = rng.choice(("pdf", "docx", "txt", "md"))
        path = directory / f"doc{index:05d}.{kind}"
        if kind == "pdf":
            make_pdf(path, body, metadata={"title": f"Document {index}"})
        elif kind == "docx":
            make_docx(path, [Heading(f"Document {index}"), *body,
                             Table([["key", "value"], ["index", str(index)]])])
        else:
            make_text(path, "\n\n".join(body), rng.choice(("utf-8", "utf-8-sig", "cp1252")))
        paths.append(path)
    return paths


def _rewrite_zip(data: bytes, replacements: Mapping[str, bytes | None]) -> bytes:
    """Copy a ZIP, replacing members (None removes one)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, \
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename in replacements:
                content = replacements[info.filename]
                if content is None:
                    continue
            else:
                content = source.read(info.filename)
            target.writestr(info.filename, content)
    return buffer.getvalue()


def _bad_file(directory: Path, index: int, rng: random.Random) -> Path:
    choice = rng.choice(("empty", "binary", "truncated", "unsupported", "image"))
    if choice == "empty":
        path = directory / f"bad{index:05d}.txt"
        path.write_bytes(b"")
        return path
    if choice == "binary":
        return make_binary(directory / f"bad{index:05d}.txt", seed=index)
    if choice == "truncated":
        return make_truncated_pdf(directory / f"bad{index:05d}.pdf", ["cut off"] * 3)
    if choice == "image":
        return make_image_only_pdf(directory / f"bad{index:05d}.pdf")
    path = directory / f"bad{index:05d}.xyz"
    path.write_bytes(b"not supported")
    return path


def _set_core_properties(document: docx.document.Document,
                         core: Mapping[str, str | datetime]) -> None:
    properties = document.core_properties
    for name in ("title", "author", "subject", "keywords", "category", "comments",
                 "last_modified_by"):
        setattr(properties, name, core.get(name, ""))
    for name in ("created", "modified"):
        if name in core:
            setattr(properties, name, core[name])


def _add_block(document: docx.document.Document, block: Block) -> None:
    if isinstance(block, str):
        document.add_paragraph(block)
    elif isinstance(block, Heading):
        document.add_heading(block.text, level=block.level)
    elif isinstance(block, ListItem):
        document.add_paragraph(block.text, style="List Bullet")
    else:
        _add_table(document, block)


def _add_table(document: docx.document.Document, spec: Table) -> None:
    columns = max(len(row) for row in spec.rows)
    table = document.add_table(rows=len(spec.rows), cols=columns)
    for r, row in enumerate(spec.rows):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
    for (r, c), rows in spec.nested.items():
        inner = table.cell(r, c).add_table(rows=len(rows), cols=max(len(x) for x in rows))
        for ir, inner_row in enumerate(rows):
            for ic, text in enumerate(inner_row):
                inner.cell(ir, ic).text = text
    if spec.merge_first_row and columns > 1:
        table.cell(0, 0).merge(table.cell(0, columns - 1))
