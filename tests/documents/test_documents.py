"""Behaviour of the document parsers as a user of extractflow would see it.

Every fixture is built in ``tmp_path`` by testing/document_factory.py; nothing binary is
committed. Error messages are asserted on the words that tell the user what is wrong.
"""

from __future__ import annotations

import builtins
import dataclasses
import errno
import hashlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from extraction import documents
from extraction.documents import (
    PAGE_SEPARATOR,
    SUPPORTED_EXTENSIONS,
    ParsedDocument,
    format_size,
    page_for_offset,
    parse_bytes,
    parse_document,
    sniff_kind,
)
from extraction.documents import core as documents_core
from extraction.documents.model import Extracted
from testing.document_factory import (
    Heading,
    ListItem,
    Table,
    build_sample_corpus,
    docx_bytes,
    make_binary,
    make_corrupt_docx,
    make_docx,
    make_docx_from_body_xml,
    make_encrypted_office_stub,
    make_image_only_pdf,
    make_pdf,
    make_text,
    make_truncated_pdf,
    make_two_column_pdf,
    make_zip,
    pdf_bytes,
    rewrite_docx_content_type,
)

THREE_PAGES = [
    "Page one talks about the alpha grant.",
    "Page two names the bravo budget of 12,500 euros.",
    "Page three is the charlie conclusion.",
]
FRENCH = "Le café coûte 3 € — très cher.\nÉlève à l’école.\nGrüße aus München, señor Muñoz.\n"


def assert_failed(result: ParsedDocument, *phrases: str) -> None:
    """The document failed, has no text, and its error contains every phrase."""
    assert result.status == "failed", result
    assert result.text == "" and result.page_offsets == []
    assert result.error is not None
    for phrase in phrases:
        assert phrase in result.error, f"{phrase!r} not in {result.error!r}"


# --------------------------------------------------------------------------- PDF


def test_pdf_pages_are_joined_with_the_separator_and_offsets_point_at_page_starts(
        tmp_path: Path) -> None:
    result = parse_document(make_pdf(tmp_path / "grant.pdf", THREE_PAGES))

    assert result.ok and result.error is None
    assert result.page_count == 3
    assert result.mime == "application/pdf"
    assert result.text == PAGE_SEPARATOR.join(THREE_PAGES)
    assert len(result.page_offsets) == 3 and result.page_offsets[0] == 0
    for offset, page_text in zip(result.page_offsets, THREE_PAGES, strict=True):
        assert result.text[offset:].startswith(page_text)
    assert [result.page_text(n) for n in (1, 2, 3)] == THREE_PAGES


def test_a_word_on_page_two_maps_to_page_two(tmp_path: Path) -> None:
    result = parse_document(make_pdf(tmp_path / "grant.pdf", THREE_PAGES))
    start = result.text.index("bravo budget")
    end = start + len("bravo budget")

    assert page_for_offset(result.page_offsets, start) == 2
    assert page_for_offset(result.page_offsets, end - 1) == 2
    assert result.page_for(start) == 2
    assert result.page_for(result.text.index("alpha")) == 1
    assert result.page_for(result.text.index("charlie")) == 3


def test_page_boundaries_first_char_last_char_and_separator(tmp_path: Path) -> None:
    result = parse_document(make_pdf(tmp_path / "grant.pdf", THREE_PAGES))
    second_start = result.page_offsets[1]

    assert result.page_for(0) == 1
    assert result.page_for(second_start) == 2
    assert result.page_for(second_start - 1) == 1  # the separator belongs to page 1
    assert result.page_for(second_start - len(PAGE_SEPARATOR)) == 1
    assert result.page_for(len(result.text) - 1) == 3
    assert result.page_for(len(result.text)) == 3  # an end offset is valid too


def test_page_for_offset_rejects_impossible_offsets(tmp_path: Path) -> None:
    result = parse_document(make_pdf(tmp_path / "grant.pdf", THREE_PAGES))

    with pytest.raises(ValueError, match=">= 0"):
        page_for_offset(result.page_offsets, -1)
    with pytest.raises(ValueError, match="past the end"):
        result.page_for(len(result.text) + 1)
    with pytest.raises(ValueError, match="no pages"):
        page_for_offset([], 0)
    with pytest.raises(ValueError, match="does not exist"):
        result.page_text(4)


def test_page_for_offset_on_many_pages() -> None:
    offsets = [0, 10, 25, 25 + 3, 100]  # page 4 is empty: its start equals page 3's end + sep

    assert [page_for_offset(offsets, o) for o in (0, 9, 10, 24, 25, 27, 28, 99, 100, 10**6)] \
        == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_blank_page_in_the_middle_keeps_its_place_and_is_reported(tmp_path: Path) -> None:
    result = parse_document(make_pdf(tmp_path / "gap.pdf", ["first page", "", "third page"]))

    assert result.ok
    assert result.page_count == 3 and len(result.page_offsets) == 3
    assert result.page_for(result.text.index("third")) == 3
    assert result.page_text(2) == ""
    assert result.metadata["pages_without_text"] == [2]


def test_pdf_metadata_is_readable(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "meta.pdf", ["body"], metadata={
        "title": "Annual report", "author": "Ann Smith", "subject": "Finance",
        "keywords": "budget, grant", "creationDate": "D:20240102030405+01'00'",
        "modDate": "D:20240615"})

    metadata = parse_document(path).metadata

    assert metadata["title"] == "Annual report"
    assert metadata["author"] == "Ann Smith"
    assert metadata["subject"] == "Finance"
    assert metadata["keywords"] == "budget, grant"
    assert metadata["created"] == "2024-01-02T03:04:05+01:00"
    assert metadata["modified"] == "2024-06-15"
    assert metadata["format"].startswith("PDF")
    assert "creationDate" not in metadata and "" not in metadata.values()


def test_two_column_pdf_keeps_each_column_together(tmp_path: Path) -> None:
    left = [f"left column line {i}" for i in range(5)]
    right = [f"right column line {i}" for i in range(5)]

    result = parse_document(make_two_column_pdf(tmp_path / "columns.pdf", left, right))

    assert "\n".join(left) in result.text
    assert "\n".join(right) in result.text
    assert "  " not in result.text  # no layout padding that would break quote matching


def test_image_only_pdf_is_empty_and_says_ocr_is_not_supported(tmp_path: Path) -> None:
    result = parse_document(make_image_only_pdf(tmp_path / "scan.pdf", pages=3))

    assert result.status == "empty"
    assert result.error is not None
    assert result.error.startswith("no text layer — OCR is not supported")
    assert "3 pages" in result.error
    assert result.page_count == 3
    assert result.text == "" and result.page_offsets == []
    assert result.content_hash is not None


def test_password_protected_pdf_fails_with_a_clear_reason(tmp_path: Path) -> None:
    result = parse_document(make_pdf(tmp_path / "secret.pdf", ["hidden"],
                                     encrypt_password="s3cret"))

    assert_failed(result, "password-protected PDF: ", "password")
    assert result.content_hash is not None


def test_pdf_with_only_an_owner_password_opens_normally(tmp_path: Path) -> None:
    result = parse_document(make_pdf(tmp_path / "restricted.pdf", ["printable text"],
                                     owner_password="owner"))

    assert result.ok
    assert result.text == "printable text"
    assert "AES" in result.metadata["encryption"]


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.8, 0.97])
def test_truncated_pdf_fails_and_says_it_was_cut_off(tmp_path: Path, keep: float) -> None:
    result = parse_document(make_truncated_pdf(tmp_path / "cut.pdf", THREE_PAGES, keep=keep))

    assert_failed(result, "truncated PDF", "cut off")


def test_corrupt_pdf_fails_and_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 20 + b"\n%%EOF\n")

    assert_failed(parse_document(path), "corrupt PDF")


def test_pdf_without_a_page_tree_is_corrupt_not_empty() -> None:
    result = parse_bytes(b"%PDF-1.4\n1 0 obj garbage\n%%EOF\n", "hollow.pdf")

    assert_failed(result, "corrupt PDF", "no pages")


def test_pdf_with_junk_before_the_header_is_still_read() -> None:
    result = parse_bytes(b"\r\nHTTP junk\r\n" + pdf_bytes(["real content"]), "prefixed.pdf")

    assert result.ok and result.text == "real content"


def test_pdfs_can_be_parsed_from_many_threads(tmp_path: Path) -> None:
    paths = [make_pdf(tmp_path / f"doc{i}.pdf", [f"document {i} page {p}" for p in range(4)])
             for i in range(16)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(parse_document, paths * 3))

    assert all(r.ok and r.page_count == 4 for r in results)
    assert [r.text for r in results[:16]] == [r.text for r in results[16:32]]
    assert results[5].page_text(3) == "document 5 page 2"


def test_parsing_pdfs_does_not_load_pymupdfs_unused_extras_but_they_stay_importable() -> None:
    """PyMuPDF 2 imports an ONNX layout model and pymupdf4llm (~1 s, ~80 MB) if installed."""
    script = (
        "import sys\n"
        "from extraction.documents import parse_bytes\n"
        "loaded = [m for m in ('pymupdf.layout', 'pymupdf4llm', 'onnxruntime') "
        "if m in sys.modules]\n"
        "import pymupdf4llm\n"
        "print('loaded:', loaded, 'later:', pymupdf4llm.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[2])

    assert done.stdout.strip() == "loaded: [] later: pymupdf4llm"


# --------------------------------------------------------------------------- DOCX


def test_docx_keeps_paragraphs_and_tables_in_body_order(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "report.docx", [
        Heading("Introduction", level=1),
        "Text before the table.",
        Table([["Name", "Age"], ["Ann", "34"], ["Bob", "51"]]),
        "Text after the table.",
        Heading("Details", level=2),
        ListItem("first point"),
        ListItem("second point"),
    ])

    result = parse_document(path)

    assert result.ok
    assert result.text == (
        "# Introduction\n\n"
        "Text before the table.\n\n"
        "Name | Age\nAnn | 34\nBob | 51\n\n"
        "Text after the table.\n\n"
        "## Details\n\n"
        "- first point\n\n"
        "- second point"
    )
    assert result.page_count is None
    assert result.page_offsets == [0]
    assert result.page_for(result.text.index("Bob")) == 1


def test_docx_convenience_arguments_put_headings_first_and_tables_last(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "simple.docx", ["Body paragraph."], headings=["Summary"],
                     tables=[[["k", "v"]]])

    assert parse_document(path).text == "# Summary\n\nBody paragraph.\n\nk | v"


def test_docx_title_style_and_deep_headings(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "h.docx", [Heading("The Title", level=0),
                                           Heading("Deep", level=4), "text"])

    assert parse_document(path).text == "# The Title\n\n#### Deep\n\ntext"


def test_docx_tables_merged_nested_and_empty_rows(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "t.docx", [
        Table([["Merged header", "", ""], ["a", "b", "c"], ["", "", ""]],
              merge_first_row=True, nested={(1, 2): [["inner 1", "inner 2"]]}),
    ])

    text = parse_document(path).text

    assert text.splitlines() == ["Merged header", "a | b | c inner 1 inner 2"]


def test_docx_content_controls_tracked_changes_and_text_boxes(tmp_path: Path) -> None:
    body = (
        '<w:p><w:pPr><w:pStyle w:val="Heading2"/></w:pPr><w:r><w:t>Scope</w:t></w:r></w:p>'
        "<w:sdt><w:sdtContent><w:p><w:r><w:t>In a content control</w:t></w:r></w:p>"
        "</w:sdtContent></w:sdt>"
        '<w:p><w:r><w:t xml:space="preserve">Kept </w:t></w:r>'
        '<w:ins w:id="1" w:author="a"><w:r><w:t>inserted</w:t></w:r></w:ins>'
        '<w:del w:id="2" w:author="a"><w:r><w:delText>deleted</w:delText></w:r></w:del>'
        "<w:r><w:tab/><w:t>tabbed</w:t><w:br/><w:t>next line</w:t></w:r></w:p>"
        "<w:p><w:r><w:t>Anchor</w:t></w:r><w:r><mc:AlternateContent>"
        '<mc:Choice Requires="wps"><w:drawing><wp:anchor><a:graphic><a:graphicData>'
        "<wps:wsp><wps:txbx><w:txbxContent><w:p><w:r><w:t>Boxed text</w:t></w:r></w:p>"
        "</w:txbxContent></wps:txbx></wps:wsp></a:graphicData></a:graphic></wp:anchor>"
        "</w:drawing></mc:Choice><mc:Fallback><w:pict><v:shape><v:textbox><w:txbxContent>"
        "<w:p><w:r><w:t>Boxed text</w:t></w:r></w:p></w:txbxContent></v:textbox></v:shape>"
        "</w:pict></mc:Fallback></mc:AlternateContent></w:r></w:p>"
        '<w:p><w:pPr><w:numPr><w:ilvl w:val="0"/><w:numId w:val="1"/></w:numPr></w:pPr>'
        "<w:r><w:t>numbered item</w:t></w:r></w:p>"
        '<w:p><w:r><w:instrText>PAGEREF _Toc1 \\h</w:instrText></w:r>'
        "<w:hyperlink><w:r><w:t>link text</w:t></w:r></w:hyperlink></w:p>"
    )

    result = parse_document(make_docx_from_body_xml(tmp_path / "x.docx", body))

    assert result.text == (
        "## Scope\n\nIn a content control\n\nKept inserted\ttabbed\nnext line\n\n"
        "Anchor\n\nBoxed text\n\n- numbered item\n\nlink text"
    )


def test_docx_metadata_comes_from_core_properties(tmp_path: Path) -> None:
    created = datetime(2023, 5, 17, 9, 30, tzinfo=UTC)
    path = make_docx(tmp_path / "m.docx", ["x"], core={
        "title": "Board minutes", "author": "Carol", "subject": "Governance",
        "keywords": "minutes", "created": created})

    metadata = parse_document(path).metadata

    assert metadata["title"] == "Board minutes"
    assert metadata["author"] == "Carol"
    assert metadata["subject"] == "Governance"
    assert metadata["keywords"] == "minutes"
    assert metadata["created"].startswith("2023-05-17T09:30:00")
    assert "comments" not in metadata  # empty values are left out


def test_docx_without_core_properties_gets_no_invented_metadata(tmp_path: Path) -> None:
    path = make_docx_from_body_xml(tmp_path / "bare.docx", "<w:p><w:r><w:t>hi</w:t></w:r></w:p>",
                                   core_properties=False)

    result = parse_document(path)

    assert result.ok and result.text == "hi"
    assert result.metadata == {}  # python-docx would otherwise invent "Word Document"


def test_docx_without_text_is_empty(tmp_path: Path) -> None:
    result = parse_document(make_docx(tmp_path / "blank.docx", ["", "   "]))

    assert result.status == "empty"
    assert result.error is not None and "no text" in result.error


def test_docx_with_damaged_xml_fails(tmp_path: Path) -> None:
    assert_failed(parse_document(make_corrupt_docx(tmp_path / "bad.docx")),
                  "corrupt DOCX", "XML")


def test_truncated_docx_fails_as_an_unreadable_zip(tmp_path: Path) -> None:
    path = tmp_path / "cut.docx"
    path.write_bytes(docx_bytes(["some text"])[:4000])

    assert_failed(parse_document(path), "corrupt DOCX", "ZIP", "truncated")


def test_zip_without_word_content_is_not_a_docx(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "archive.docx", {"notes.txt": b"hello"})

    assert_failed(parse_document(path), "corrupt DOCX", "no Word document")


def test_excel_file_renamed_docx_says_it_looks_like_excel(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "sheet.docx", {"xl/workbook.xml": b"<workbook/>"})

    assert_failed(parse_document(path), "'sheet.docx' is not a DOCX", "Excel")


def test_macro_enabled_document_renamed_docx_says_to_save_as_docx(tmp_path: Path) -> None:
    path = tmp_path / "macro.docx"
    path.write_bytes(rewrite_docx_content_type(
        docx_bytes(["x"]), "application/vnd.ms-word.document.macroEnabled.main+xml"))

    assert_failed(parse_document(path), "not a plain Word .docx", "macroEnabled",
                  "save it as .docx")


def test_password_protected_docx_is_recognised(tmp_path: Path) -> None:
    result = parse_document(make_encrypted_office_stub(tmp_path / "locked.docx"))

    assert_failed(result, "password-protected DOCX", "remove the password")


def test_legacy_doc_renamed_docx_suggests_saving_as_docx(tmp_path: Path) -> None:
    path = tmp_path / "old.docx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(2048))

    assert_failed(parse_document(path), "legacy Microsoft Office", "save it as .docx")


# --------------------------------------------------------------------------- text


@pytest.mark.parametrize(("encoding", "reported", "bom"), [
    ("utf-8", "utf-8", False),
    ("utf-8-sig", "utf-8", True),
    ("utf-16", "utf-16-le", True),  # Python writes a little-endian BOM
    ("utf-16-be", "utf-16-be", False),
    ("utf-32", "utf-32-le", True),
    ("cp1252", "cp1252", False),
])
def test_text_encodings_are_detected(tmp_path: Path, encoding: str, reported: str,
                                     bom: bool) -> None:
    result = parse_document(make_text(tmp_path / "notes.txt", FRENCH, encoding))

    assert result.ok
    assert result.text == FRENCH
    assert not result.text.startswith("\ufeff")
    assert result.metadata["encoding"] == reported
    assert result.metadata.get("bom", False) is bom
    assert result.page_count is None and result.page_offsets == [0]


def test_utf16_with_bom_in_big_endian(tmp_path: Path) -> None:
    path = tmp_path / "be.txt"
    path.write_bytes(b"\xfe\xff" + FRENCH.encode("utf-16-be"))

    result = parse_document(path)

    assert result.text == FRENCH and result.metadata["encoding"] == "utf-16-be"


@pytest.mark.parametrize("text", [
    "Grüße aus München. Die Straße ist schön.\n",
    "El niño comió en la mañana. ¿Qué pasó?\n",
    "café",  # short texts fool statistical detectors; cp1252 wins the tie
])
def test_latin1_and_cp1252_texts_decode_correctly(tmp_path: Path, text: str) -> None:
    result = parse_document(make_text(tmp_path / "legacy.txt", text, "latin-1"))

    assert result.ok and result.text == text


def test_utf8_with_one_stray_legacy_byte_stays_utf8(tmp_path: Path) -> None:
    path = tmp_path / "mixed.txt"
    path.write_bytes(FRENCH.encode("utf-8") + b"price: 5 \x80\n" + FRENCH.encode("utf-8"))

    result = parse_document(path)

    assert result.ok and result.metadata["encoding"] == "utf-8"
    assert result.text == FRENCH + "price: 5 \ufffd\n" + FRENCH


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_newlines_are_normalised(tmp_path: Path, newline: str) -> None:
    result = parse_document(make_text(tmp_path / "dos.txt", "one\ntwo\n\nthree", "utf-8",
                                      newline=newline))

    assert result.text == "one\ntwo\n\nthree"


@pytest.mark.parametrize("name", ["readme.md", "notes.markdown", "plain.text", "SHOUT.TXT"])
def test_markdown_and_other_text_extensions(tmp_path: Path, name: str) -> None:
    result = parse_document(make_text(tmp_path / name, "# Title\n\nBody *text*.\n"))

    assert result.ok and result.text == "# Title\n\nBody *text*.\n"
    assert result.mime in ("text/plain", "text/markdown")


def test_markdown_mime(tmp_path: Path) -> None:
    assert parse_document(make_text(tmp_path / "a.md", "x")).mime == "text/markdown"
    assert parse_document(make_text(tmp_path / "a.txt", "x")).mime == "text/plain"


@pytest.mark.parametrize(("size", "seed"), [(4096, 0), (200, 1), (40, 2), (100_000, 3)])
def test_binary_garbage_named_txt_is_not_a_text_file(tmp_path: Path, size: int,
                                                     seed: int) -> None:
    result = parse_document(make_binary(tmp_path / "garbage.txt", size, seed=seed))

    assert_failed(result, "not a text file")


def test_image_named_txt_says_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "photo.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))

    assert_failed(parse_document(path), "'photo.txt' is not a text file", "PNG image")


def test_whitespace_only_text_is_empty(tmp_path: Path) -> None:
    result = parse_document(make_text(tmp_path / "blank.txt", "  \n\t\n   \n"))

    assert result.status == "empty"
    assert result.error is not None and "only whitespace" in result.error


def test_nul_characters_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "nul.txt"
    path.write_bytes("\ufeffbefore\x00after".encode("utf-8"))

    result = parse_document(path)

    assert result.text == "beforeafter"  # PostgreSQL text columns reject NUL


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("name", ["empty.pdf", "empty.docx", "empty.txt", "empty.md"])
def test_zero_byte_files_are_empty(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")

    result = parse_document(path)

    assert result.status == "empty"
    assert result.error == "empty file (0 bytes)"
    assert result.size_bytes == 0
    assert result.content_hash == hashlib.sha256(b"").hexdigest()


def test_unsupported_extension_lists_what_is_supported(tmp_path: Path) -> None:
    path = tmp_path / "data.xyz"
    path.write_bytes(b"whatever")

    result = parse_document(path)

    assert_failed(result, "unsupported file type '.xyz' (supported: .pdf, .docx, .txt, .md")
    assert result.size_bytes == 8


def test_file_without_extension_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "README"
    path.write_bytes(b"text")

    assert_failed(parse_document(path), "unsupported file type without an extension")


@pytest.mark.parametrize(("name", "content", "phrases"), [
    ("report.docx", pdf_bytes(["x"]), ("'report.docx' is not a DOCX", "looks like a PDF")),
    ("report.pdf", docx_bytes(["x"]), ("'report.pdf' is not a PDF", "Word DOCX document")),
    ("notes.pdf", b"Just some notes\nin plain text.\n", ("is not a PDF", "plain text")),
    ("login.pdf", b"<!DOCTYPE html><html><body>Sign in</body></html>",
     ("is not a PDF", "HTML page", "login")),
    ("scan.pdf", b"\xff\xd8\xff\xe0" + bytes(64), ("is not a PDF", "JPEG image")),
    ("paper.txt", pdf_bytes(["x"]), ("'paper.txt' is not a text file", "a PDF")),
    ("letter.md", docx_bytes(["x"]), ("is not a text file", "DOCX")),
])
def test_content_that_does_not_match_the_extension(tmp_path: Path, name: str, content: bytes,
                                                   phrases: tuple[str, ...]) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    result = parse_document(path)

    assert_failed(result, *phrases)
    assert result.content_hash == hashlib.sha256(content).hexdigest()


def test_file_over_the_size_limit_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.pdf"
    with path.open("wb") as handle:
        handle.truncate(int(12.3 * 1024 * 1024))  # sparse: cheap to create

    result = parse_document(path, max_bytes=10 * 1024 * 1024)

    assert_failed(result)
    assert result.error == "file is 12.3 MB, over the 10 MB limit"
    assert result.content_hash is None
    assert result.size_bytes == int(12.3 * 1024 * 1024)


def test_size_limit_is_inclusive_and_applies_to_bytes_too(tmp_path: Path) -> None:
    data = pdf_bytes(["fits"])

    assert parse_bytes(data, "a.pdf", max_bytes=len(data)).ok
    assert_failed(parse_bytes(data, "a.pdf", max_bytes=len(data) - 1), "over the", "limit")


def test_missing_file(tmp_path: Path) -> None:
    result = parse_document(tmp_path / "nowhere.pdf")

    assert_failed(result, "cannot read file: no such file")
    assert result.filename == "nowhere.pdf"
    assert result.content_hash is None and result.size_bytes is None


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "folder.pdf"
    folder.mkdir()

    assert_failed(parse_document(folder), "cannot read file: it is a directory")


def test_permission_denied_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_text(tmp_path / "private.txt", "secret")
    real_open = builtins.open

    def guarded_open(file: object, *args: object, **kwargs: object) -> object:
        if os.fspath(file) == str(path):  # type: ignore[arg-type]
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", guarded_open)

    result = parse_document(path)

    assert_failed(result, "cannot read file: permission denied")
    assert result.size_bytes == 6  # stat worked, reading did not


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0,
                    reason="needs POSIX permissions and a non-root user")
def test_permission_denied_on_a_real_file(tmp_path: Path) -> None:
    path = make_text(tmp_path / "private.txt", "secret")
    path.chmod(0)
    try:
        assert_failed(parse_document(path), "cannot read file: permission denied")
    finally:
        path.chmod(0o600)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)

    assert_failed(parse_document(fifo), "cannot read file: not a regular file")


def _valid_files() -> dict[str, bytes]:
    return {
        "a.pdf": pdf_bytes(THREE_PAGES, metadata={"title": "t"}),
        "a.docx": docx_bytes([Heading("h"), "p", Table([["a", "b"]])]),
        "a.txt": FRENCH.encode("utf-16"),
    }


@pytest.mark.parametrize("name", ["a.pdf", "a.docx", "a.txt"])
def test_never_raises_on_any_truncation_or_mutation(name: str) -> None:
    data = _valid_files()[name]
    cuts = [1, 2, 10, 100, len(data) // 3, len(data) // 2, len(data) - 10, len(data) - 1]
    variants = [data[:cut] for cut in cuts]
    variants += [data[: len(data) // 2] + b"\x00" * 64 + data[len(data) // 2 + 64:]]
    variants += [bytes(reversed(data))]

    for variant in variants:
        result = parse_bytes(variant, name)
        assert result.status in ("ok", "failed", "empty")
        assert (result.error is None) == (result.status == "ok"), result
        assert result.content_hash == hashlib.sha256(variant).hexdigest()


def test_an_unexpected_parser_error_becomes_a_failed_document(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(data: bytes) -> Extracted:
        raise RuntimeError("library bug")

    broken = dataclasses.replace(documents_core._FORMATS[".txt"], parser=explode)
    monkeypatch.setitem(documents_core._FORMATS, ".txt", broken)

    result = parse_bytes(b"hello", "a.txt")

    assert_failed(result, "unexpected RuntimeError: library bug")


def test_negative_size_limit_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        parse_bytes(b"x", "a.txt", max_bytes=-1)


# --------------------------------------------------------------------------- hashing & API


def test_content_hash_is_sha256_of_the_bytes_and_stable(tmp_path: Path) -> None:
    first = make_pdf(tmp_path / "one.pdf", THREE_PAGES)
    copy = tmp_path / "copy-with-other-name.pdf"
    copy.write_bytes(first.read_bytes())

    a, b, c = parse_document(first), parse_document(first), parse_document(copy)

    assert a.content_hash == hashlib.sha256(first.read_bytes()).hexdigest()
    assert a.content_hash == b.content_hash == c.content_hash
    assert len(a.content_hash or "") == 64
    changed = tmp_path / "changed.txt"
    make_text(changed, "version 1")
    before = parse_document(changed).content_hash
    make_text(changed, "version 2")
    assert parse_document(changed).content_hash != before


def test_parse_bytes_matches_parse_document(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "same.docx", ["alpha", Table([["x", "y"]])])

    from_file = parse_document(path)
    from_bytes = parse_bytes(path.read_bytes(), "same.docx", source_path="s3://bucket/same.docx")

    assert from_bytes.text == from_file.text
    assert from_bytes.content_hash == from_file.content_hash
    assert from_bytes.source_path == "s3://bucket/same.docx"
    assert from_file.source_path == str(path)
    assert from_file.size_bytes == path.stat().st_size


def test_parsed_document_is_frozen_and_its_repr_stays_short(tmp_path: Path) -> None:
    result = parse_document(make_text(tmp_path / "long.txt", "word " * 10_000))

    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = "failed"  # type: ignore[misc]
    assert len(repr(result)) < 1000


@pytest.mark.parametrize(("data", "kind"), [
    (b"", "empty"),
    (b"%PDF-1.7\n", "pdf"),
    (b"PK\x03\x04garbage", "zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "ole"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"{\\rtf1\\ansi hello}", "rtf"),
    (b"<?xml version='1.0'?><a/>", "xml"),
    ("plain words, café".encode("cp1252"), "text"),
    ("\ufeffwith BOM".encode("utf-16"), "text"),
    (bytes(range(256)), "binary"),
])
def test_sniff_kind(data: bytes, kind: str) -> None:
    assert sniff_kind(data) == kind


def test_sniff_kind_tells_office_zips_apart() -> None:
    assert sniff_kind(docx_bytes(["x"])) == "docx"


def test_public_api() -> None:
    assert SUPPORTED_EXTENSIONS[:4] == (".pdf", ".docx", ".txt", ".md")
    assert set(documents.__all__) >= {"parse_document", "parse_bytes", "ParsedDocument",
                                      "page_for_offset", "SUPPORTED_EXTENSIONS", "sniff_kind",
                                      "PAGE_SEPARATOR"}
    assert PAGE_SEPARATOR == "\n\f\n"
    assert [format_size(n) for n in (0, 1, 1536, 10 * 1024 * 1024)] \
        == ["0 bytes", "1 byte", "1.5 KB", "10 MB"]


def test_sample_corpus_parses_without_surprises(tmp_path: Path) -> None:
    paths = build_sample_corpus(tmp_path / "corpus", 40, seed=7, bad_fraction=0.25)

    results = [parse_document(p) for p in paths]

    assert len(results) == 40
    assert any(r.ok for r in results) and any(not r.ok for r in results)
    for path, result in zip(paths, results, strict=True):
        if path.name.startswith("doc"):
            assert result.ok, result
        else:
            assert result.status in ("failed", "empty") and result.error

