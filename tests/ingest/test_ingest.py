"""Ingest without Prefect: discovery, bad files in a batch, de-duplication, storage, the pool.

Every fixture file is written at test time with ``testing/document_factory.py``; every test
that stores runs on SQLite and PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from extraction import codebook, db
from extraction.documents import page_for_offset, parse_document
from extraction.errors import DatabaseError, NotFoundError, ValidationError
from extraction.ingest import (
    IngestSummary,
    ParsePool,
    discover_files,
    ingest_paths,
    is_transient,
)
from extraction.ingest import service as ingest_service
from extraction.models import Document, ParseStatus
from testing.document_factory import (
    docx_bytes,
    make_corrupt_docx,
    make_docx,
    make_image_only_pdf,
    make_pdf,
    make_text,
    make_truncated_pdf,
)

PAGES = ["Alpha page one says hello.", "Beta page two holds the dose of 20 mg.",
         "Gamma page three ends the report."]


@pytest.fixture
def project(session: Session) -> str:
    codebook.create_project(session, {"name": "ingest-test"})
    session.commit()
    return "ingest-test"


def _rows(url: str) -> dict[str, Document]:
    """Every stored document by filename, read in a fresh session."""
    with db.session_scope(url) as s:
        return {d.filename: d for d in s.scalars(select(Document))}


def _bad_batch(folder: Path) -> dict[str, tuple[str, str]]:
    """Write good files and one file of every bad class; returns name -> (status, phrase)."""
    folder.mkdir()
    make_pdf(folder / "report.pdf", PAGES)
    make_docx(folder / "memo.docx", ["The memo text."], headings=["Memo"])
    make_text(folder / "notes.txt", "Plain notes in cp1252: café", "cp1252")
    make_text(folder / "readme.md", "# Title\n\nSome markdown.")
    make_truncated_pdf(folder / "truncated.pdf", ["cut off here"] * 3)
    make_corrupt_docx(folder / "corrupt.docx")
    make_pdf(folder / "locked.pdf", ["secret"], encrypt_password="pw")
    (folder / "zero.txt").write_bytes(b"")
    make_image_only_pdf(folder / "scan.pdf", pages=2)
    (folder / "table.xyz").write_bytes(b"not a supported type")
    (folder / "memo-really.pdf").write_bytes(docx_bytes(["a Word file named .pdf"]))
    make_text(folder / "huge.txt", "x" * 300_000)
    (folder / "gone.pdf").symlink_to(folder / "does-not-exist.pdf")  # unreadable path
    return {
        "truncated.pdf": ("failed", "truncated PDF"),
        "corrupt.docx": ("failed", "corrupt DOCX"),
        "locked.pdf": ("failed", "password-protected PDF"),
        "zero.txt": ("empty", "empty file (0 bytes)"),
        "scan.pdf": ("empty", "no text layer — OCR is not supported"),
        "table.xyz": ("failed", "unsupported file type '.xyz'"),
        "memo-really.pdf": ("failed", "is not a PDF"),
        "huge.txt": ("failed", "over the 200 KB limit"),
        "gone.pdf": ("failed", "cannot read file: no such file"),
    }


# ---------------------------------------------------------------- bad files


def test_every_bad_file_class_lands_as_a_row_and_the_batch_completes(
        db_url: str, project: str, tmp_path: Path) -> None:
    bad = _bad_batch(tmp_path / "batch")
    summary = ingest_paths(project, [tmp_path / "batch"], max_file_bytes=200 * 1024,
                           chunk_size=4)

    assert summary.files_seen == summary.files_done == 13
    assert (summary.ok, summary.empty, summary.failed) == (4, 2, 7)
    assert summary.added == 13 and summary.duplicate_count == 0
    rows = _rows(db_url)
    assert len(rows) == 13
    for name, (status, phrase) in bad.items():
        row = rows[name]
        assert row.parse_status is ParseStatus(status), (name, row.parse_error)
        assert row.parse_error and phrase in row.parse_error, (name, row.parse_error)
        assert row.text is None and row.page_offsets == []
    reported = {p.filename: p for p in summary.problems}
    assert set(reported) == set(bad)
    assert all(p.reason == rows[name].parse_error for name, p in reported.items())
    for name in ("report.pdf", "memo.docx", "notes.txt", "readme.md"):
        assert rows[name].parse_status is ParseStatus.OK and rows[name].parse_error is None
    assert "café" in (rows["notes.txt"].text or "")
    assert rows["report.pdf"].page_count == 3 and summary.pages == 3 + 1 + 1 + 1


def test_summary_counts_every_file_once_and_renders(db_url: str, project: str,
                                                    tmp_path: Path) -> None:
    _bad_batch(tmp_path / "batch")
    summary = ingest_paths(project, [tmp_path / "batch"], max_file_bytes=200 * 1024)
    again = ingest_paths(project, [tmp_path / "batch"], max_file_bytes=200 * 1024)
    for s in (summary, again):
        assert s.ok + s.empty + s.failed + s.duplicate_count == s.files_done == 13
    markdown = summary.to_markdown()
    assert "| Files seen | 13 |" in markdown and "| Failed | 7 |" in markdown
    assert "| locked.pdf | failed | password-protected PDF" in markdown
    data = summary.to_dict()
    assert data["failed"] == 7 and len(data["problems"]) == 9
    assert {"filename", "source_path", "status", "reason"} <= set(data["problems"][0])


# ---------------------------------------------------------------- de-duplication


def test_reingesting_the_same_folder_adds_nothing_and_says_so(
        db_url: str, project: str, tmp_path: Path) -> None:
    _bad_batch(tmp_path / "batch")
    ingest_paths(project, [tmp_path / "batch"], max_file_bytes=200 * 1024)
    first_ids = {name: row.id for name, row in _rows(db_url).items()}

    again = ingest_paths(project, [tmp_path / "batch"], max_file_bytes=200 * 1024)

    # Files with known bytes are duplicates, failed ones included. The unreadable, the
    # over-limit and the unsupported file were refused before being read (no hash): they
    # fail again, and their rows are replaced, not doubled.
    unread = {"gone.pdf", "huge.txt", "table.xyz"}
    assert again.duplicate_count == 10 and again.failed == 3 and again.ok == 0
    assert again.added == 3 and again.replaced == 3
    rows = _rows(db_url)
    assert set(rows) == set(first_ids)
    assert {n for n in rows if rows[n].id != first_ids[n]} == unread
    assert {d.filename for d in again.duplicates} == set(first_ids) - unread


def test_known_content_is_not_parsed_again_and_new_files_are_read_once(
        db_url: str, project: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from extraction.ingest import store as ingest_store

    hashed: list[str] = []
    real_hash = ingest_store._hash_file
    monkeypatch.setattr(ingest_store, "_hash_file",
                        lambda path: hashed.append(os.path.basename(path)) or real_hash(path))
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(3):
        make_pdf(folder / f"r{i}.pdf", [f"report {i}", "second page"])
    ingest_paths(project, [folder])
    assert hashed == []  # a new project: nothing to compare with, files read by the parser

    make_text(folder / "new.txt", "a file the project has not seen")
    parsed: list[str] = []

    def counting_parse(path: str, *, max_bytes: int | None = None):  # type: ignore[no-untyped-def]
        parsed.append(os.path.basename(path))
        return parse_document(path, max_bytes=max_bytes)

    project_id, _ = ingest_service.resolve_project(project)
    paths = sorted(str(p) for p in folder.iterdir())
    with ParsePool(1, parse=counting_parse) as pool:
        items = ingest_service.parse_chunk(project_id, paths, pool=pool, max_bytes=None)

    assert parsed == ["new.txt"]
    assert sorted(hashed) == ["r0.pdf", "r1.pdf", "r2.pdf"]  # same size as a stored document
    assert [type(i).__name__ for i in items] == ["ParsedDocument", "KnownFile", "KnownFile",
                                                  "KnownFile"]


def test_identical_files_in_one_batch_keep_the_first_in_order(
        db_url: str, project: str, tmp_path: Path) -> None:
    folder = tmp_path / "copies"
    folder.mkdir()
    data = make_pdf(folder / "b.pdf", PAGES).read_bytes()
    for name in ("a.pdf", "c.pdf"):
        (folder / name).write_bytes(data)
    make_pdf(folder / "other.pdf", ["something else"])

    summary = ingest_paths(project, [folder], chunk_size=1)

    assert summary.ok == 2 and summary.duplicate_count == 2
    assert [(d.filename, d.duplicate_of) for d in summary.duplicates] == [
        ("b.pdf", "a.pdf"), ("c.pdf", "a.pdf")]
    assert set(_rows(db_url)) == {"a.pdf", "other.pdf"}


def test_a_corrected_file_replaces_its_failed_row(db_url: str, project: str,
                                                 tmp_path: Path) -> None:
    path = make_truncated_pdf(tmp_path / "report.pdf", PAGES)
    first = ingest_paths(project, [path])
    assert first.failed == 1
    failed_id = _rows(db_url)["report.pdf"].id

    make_pdf(path, PAGES)  # the user downloads it again, complete this time
    second = ingest_paths(project, [path])

    assert second.ok == 1 and second.replaced == 1 and second.duplicate_count == 0
    rows = _rows(db_url)
    assert len(rows) == 1 and rows["report.pdf"].parse_status is ParseStatus.OK
    assert rows["report.pdf"].id != failed_id


def test_an_edited_good_file_is_a_new_document_next_to_the_old(
        db_url: str, project: str, tmp_path: Path) -> None:
    path = make_text(tmp_path / "notes.txt", "first version")
    ingest_paths(project, [path])
    make_text(path, "second version")
    summary = ingest_paths(project, [path])
    assert summary.ok == 1 and summary.replaced == 0
    with db.session_scope(db_url) as s:
        texts = sorted(s.scalars(select(Document.text)))
    assert texts == ["first version", "second version"]


def test_projects_do_not_share_documents(db_url: str, project: str, session: Session,
                                         tmp_path: Path) -> None:
    codebook.create_project(session, {"name": "other-project"})
    session.commit()
    path = make_text(tmp_path / "shared.txt", "the same bytes in two projects")
    assert ingest_paths(project, [path]).ok == 1
    assert ingest_paths("other-project", [path]).ok == 1


# ---------------------------------------------------------------- storage


def test_page_offsets_round_trip_through_the_database(db_url: str, project: str,
                                                      tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "three.pdf", PAGES)
    ingest_paths(project, [path])
    parsed = parse_document(path)

    row = _rows(db_url)["three.pdf"]
    assert row.text == parsed.text and row.page_offsets == parsed.page_offsets
    assert row.content_hash == parsed.content_hash and row.size_bytes == path.stat().st_size
    offset = row.text.index("dose of 20 mg")
    assert page_for_offset(row.page_offsets, offset) == 2
    assert page_for_offset(row.page_offsets, row.text.index("Gamma")) == 3
    assert page_for_offset(row.page_offsets, 0) == 1


def test_each_chunk_commits_so_a_later_failure_loses_nothing(
        db_url: str, project: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(4):
        make_text(tmp_path / f"doc{index}.txt", f"document number {index}")
    real = ingest_service.store_chunk
    calls = []

    def failing_second(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise DatabaseError("the database went away")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_service, "store_chunk", failing_second)
    with pytest.raises(DatabaseError):
        ingest_paths(project, [tmp_path / "*.txt"], chunk_size=2)
    assert set(_rows(db_url)) == {"doc0.txt", "doc1.txt"}


def test_undecodable_file_names_and_huge_sizes_are_stored(
        db_url: str, project: str, tmp_path: Path) -> None:
    folder = tmp_path / "odd"  # not tmp_path itself: the SQLite database lives there
    folder.mkdir()
    odd = Path(os.fsdecode(str(folder).encode() + b"/caf\xe9.txt"))
    odd.write_bytes(b"a file whose name is not UTF-8")
    sparse = folder / "enormous.pdf"
    with open(sparse, "wb") as handle:
        handle.truncate(3 * 2**30)  # 3 GB on paper, nothing on disk
    summary = ingest_paths(project, [folder])
    assert summary.ok == 1 and summary.failed == 1
    rows = _rows(db_url)
    assert "caf\ufffd.txt" in rows
    big = rows["enormous.pdf"]
    assert big.size_bytes is None and "file is 3 GB, over the 50 MB limit" in big.parse_error


# ---------------------------------------------------------------- discovery


def test_discovery_walks_folders_expands_globs_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    for rel in ("z.pdf", "a.txt", "b/m.pdf", "b/deep/k.pdf", "b/.hidden.pdf", ".git/x.pdf",
                "b/deep/notes.xyz"):
        (tmp_path / rel).write_bytes(b"x")

    assert discover_files([tmp_path]) == [str(tmp_path / r) for r in (
        "a.txt", "b/deep/k.pdf", "b/deep/notes.xyz", "b/m.pdf", "z.pdf")]
    assert discover_files([str(tmp_path / "**" / "*.pdf")]) == [str(tmp_path / r) for r in (
        "b/deep/k.pdf", "b/m.pdf", "z.pdf")]
    # An explicit file is taken even when hidden; a file named twice is kept once, first.
    assert discover_files([tmp_path / "z.pdf", tmp_path / "b" / ".hidden.pdf",
                           tmp_path / "*.pdf"]) == [
        str(tmp_path / "z.pdf"), str(tmp_path / "b" / ".hidden.pdf")]


def test_discovery_names_every_input_that_yields_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "real.txt").write_text("x")
    with pytest.raises(NotFoundError) as caught:
        discover_files([tmp_path / "real.txt", tmp_path / "missing.pdf",
                        str(tmp_path / "*.docx"), tmp_path / "empty"])
    detail = caught.value.detail
    assert "missing.pdf (no such file or folder)" in detail
    assert "*.docx (no file matches this pattern)" in detail
    assert "empty (a folder without files)" in detail
    assert "real.txt" not in detail
    with pytest.raises(ValidationError):
        discover_files([])


def test_unknown_project_is_refused_before_reading(db_url: str, tmp_path: Path) -> None:
    path = make_text(tmp_path / "a.txt", "text")
    with pytest.raises(NotFoundError, match="no project with id or name 'ghost'"):
        ingest_paths("ghost", [path])


# ---------------------------------------------------------------- the parse pool


def crash_on_boom(path: str, *, max_bytes: int | None = None):  # type: ignore[no-untyped-def]
    """A parser that kills its worker process on files named boom*, like a MuPDF segfault."""
    if os.path.basename(path).startswith("boom"):
        os._exit(1)
    return parse_document(path, max_bytes=max_bytes)


def test_pool_parses_in_order_and_isolates_a_file_that_kills_its_worker(
        tmp_path: Path) -> None:
    paths = [str(make_text(tmp_path / f"f{i}.txt", f"file {i}")) for i in range(6)]
    paths.insert(3, str(make_text(tmp_path / "boom.txt", "kills the worker")))
    with ParsePool(2, parse=crash_on_boom) as pool:
        assert pool.wait_until_ready(timeout=180)
        results = pool.parse(paths)
        assert pool.parallel
        again = pool.parse(paths[:3])  # fresh workers took over
    assert [r.filename for r in results] == [os.path.basename(p) for p in paths]
    assert results[3].status == "failed" and "parser crashed" in (results[3].error or "")
    assert [r.text for i, r in enumerate(results) if i != 3] == [f"file {i}" for i in range(6)]
    assert [r.text for r in again] == ["file 0", "file 1", "file 2"]


def test_single_worker_pool_parses_in_process(tmp_path: Path) -> None:
    path = str(make_text(tmp_path / "a.txt", "in process"))
    with ParsePool(1) as pool:
        assert not pool.parallel
        assert pool.parse([path])[0].text == "in process"


# ---------------------------------------------------------------- helpers


def test_only_transient_errors_are_retryable() -> None:
    unreachable = DatabaseError("cannot connect")
    unreachable.__cause__ = OperationalError("select 1", {}, Exception("gone"))
    assert is_transient(unreachable)
    assert is_transient(OSError(5, "Input/output error"))
    assert not is_transient(DatabaseError("the database is at revision x"))
    assert not is_transient(NotFoundError("no project"))
    assert not is_transient(None)


def test_summary_headline_reads_as_a_sentence() -> None:
    summary = IngestSummary(project="p", files_seen=3, files_done=3, ok=2, failed=1,
                            pages=7, bytes=2048)
    assert summary.headline() == ("3 of 3 files into 'p': 2 parsed, 0 empty, 1 failed, "
                                  "0 duplicates skipped; 7 pages, 2 KB")

