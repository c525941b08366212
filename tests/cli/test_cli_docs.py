"""`extractflow docs …`: add (through the flow and with --no-flow), list, show, remove, errors.

On SQLite and PostgreSQL. What a user reads: the summary line and the table of files that
cannot be extracted, the per-status listing, the page previews, and plain errors with exit
codes for a wrong project, path, document id or status.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from extraction import codebook
from testing.document_factory import make_image_only_pdf, make_pdf, make_text
from tests.cli_helpers import run_cli


@pytest.fixture
def project(session: Session) -> str:
    codebook.create_project(session, {"name": "docs-cli"})
    session.commit()
    return "docs-cli"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    make_pdf(folder / "report.pdf", ["First page: 120 patients enrolled.", "Second page."])
    make_text(folder / "notes.txt", "Notes on the trial.")
    make_image_only_pdf(folder / "scan.pdf")
    (folder / "sheet.xyz").write_bytes(b"spreadsheet")
    return folder


def test_add_through_the_flow_reports_bad_files_without_failing(
        db_url: str, project: str, folder: Path, prefect_harness: None) -> None:
    added = run_cli("docs", "add", project, str(folder))
    assert added.exit_code == 0, added.stderr
    assert "Ingested 4 files into 'docs-cli'" in added.stdout
    assert "2 parsed, 1 empty, 1 failed" in added.stdout
    assert "no text layer" in added.stdout and "unsupported file type '.xyz'" in added.stdout
    again = run_cli("docs", "add", project, str(folder), "--json")
    assert again.exit_code == 0, again.stderr
    repeat = again.json()  # stdout is JSON only: no Prefect log lines mixed in
    # content already held is skipped; a file never read (unsupported type, so no hash)
    # is examined again and its failed row replaced, not doubled
    assert (repeat["duplicates"], repeat["added"], repeat["replaced"]) == (3, 1, 1)
    listed = run_cli("docs", "list", project, "--json").json()
    assert listed["total"] == 4


def test_list_show_and_remove(db_url: str, project: str, folder: Path) -> None:
    assert run_cli("docs", "add", project, str(folder), "--no-flow").exit_code == 0
    listed = run_cli("docs", "list", project, "--json").json()
    assert listed["total"] == 4
    assert listed["counts"]["ok"] == 2 and listed["counts"]["failed"] == 1
    failed = run_cli("docs", "list", project, "--status", "failed", "--json").json()
    assert [d["filename"] for d in failed["items"]] == ["sheet.xyz"]
    human = run_cli("docs", "list", project)
    assert "report.pdf" in human.stdout and "2 ok" in human.stdout

    report = next(d for d in listed["items"] if d["filename"] == "report.pdf")
    shown = run_cli("docs", "show", report["id"][:8], "--json").json()
    assert shown["page_count"] == 2 and shown["project"] == "docs-cli"
    assert shown["pages"][0]["preview"].startswith("First page")
    page_two = run_cli("docs", "show", report["id"], "--page", "2")
    assert "Second page." in page_two.stdout
    readable = run_cli("docs", "show", report["id"][:8])
    assert "report.pdf" in readable.stdout and "120 patients" in readable.stdout

    refused = run_cli("docs", "remove", report["id"], input="n\n")
    assert refused.exit_code != 0
    assert run_cli("docs", "list", project, "--json").json()["total"] == 4
    removed = run_cli("docs", "remove", report["id"], "--yes")
    assert removed.exit_code == 0 and "Removed document 'report.pdf'" in removed.stdout
    assert run_cli("docs", "list", project, "--json").json()["total"] == 3


def test_errors_name_the_problem(db_url: str, project: str, folder: Path) -> None:
    unknown = run_cli("docs", "add", "nope", str(folder), "--no-flow")
    assert unknown.exit_code == 3 and "nope" in unknown.stderr
    missing = run_cli("docs", "add", project, str(folder / "absent.pdf"), "--no-flow")
    assert missing.exit_code == 3 and "absent.pdf" in missing.stderr
    as_json = run_cli("docs", "add", project, str(folder / "absent.pdf"), "--json")
    assert as_json.exit_code == 3 and '"title"' in as_json.stdout + as_json.stderr
    bad_status = run_cli("docs", "list", project, "--status", "weird")
    assert bad_status.exit_code == 4 and "unknown status 'weird'" in bad_status.stderr
    no_doc = run_cli("docs", "show", "abcdef12")
    assert no_doc.exit_code == 3
    bad_page = run_cli("docs", "show", "abc")
    assert bad_page.exit_code != 0


def test_prefect_failing_to_start_is_a_plain_error_and_stores_nothing(
        db_url: str, project: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.ingest

    def no_prefect(**_: object) -> None:  # what Prefect raises when its server does not start
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API "
                           "server.")

    monkeypatch.setattr(flows.ingest, "ingest", no_prefect)
    failed = run_cli("docs", "add", project, str(folder))
    assert failed.exit_code == 7
    assert "Prefect did not start" in failed.stderr
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert run_cli("docs", "list", project, "--json").json()["total"] == 0


def test_file_names_are_printed_literally(db_url: str, project: str, tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    names = ["clear\x1b[2Jscreen.txt", "title\x1b]0;owned\x07.txt", "[red]markup[reverse].txt"]
    for name in names:
        make_text(folder / name, f"Text of {name!r}.")
    assert run_cli("docs", "add", project, str(folder), "--no-flow").exit_code == 0
    listed = run_cli("docs", "list", project)
    assert listed.exit_code == 0, listed.stderr
    out = listed.stdout
    assert "\x1b" not in out and "\x07" not in out  # no escape reaches the terminal
    assert "clear\\x1b[2Jscreen.txt" in out and "title\\x1b]0;owned\\x07.txt" in out
    assert "[red]markup[reverse].txt" in out, out  # shown as named, not as styling
    doc = next(d for d in run_cli("docs", "list", project, "--json").json()["items"]
               if d["filename"].startswith("[red"))
    assert doc["filename"] == names[2]  # JSON keeps the real name
    shown = run_cli("docs", "show", doc["id"][:8])
    assert "[red]markup[reverse].txt" in shown.stdout
