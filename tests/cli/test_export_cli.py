"""`extractflow export` as a user runs it: files on disk, printed summary, readable errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.orm import Session

from testing.extraction_factory import Cell, add_documents, add_job, make_project
from tests.cli_helpers import run_cli


@pytest.fixture
def seeded(session: Session) -> None:
    project = make_project(session, "trials", [{"name": "enrollment", "type": "NUMBER"},
                                               {"name": "sponsor", "type": "TEXT"}])
    d0, d1 = add_documents(session, project, 2)
    add_job(session, project, {(d0, "enrollment"): Cell(120, evidence="120 enrolled", page=3),
                               (d0, "sponsor"): "Acme", (d1, "enrollment"): Cell(8, confidence=0.2),
                               (d1, "sponsor"): Cell(None)})
    session.commit()


def test_export_prints_path_rows_and_columns(seeded: None, tmp_path: Path) -> None:
    out = tmp_path / "trials.csv"
    result = run_cli("export", "trials", "--format", "csv-wide", "-o", str(out),
                     "--include-source-text")
    assert result.exit_code == 0, result.stderr
    assert f"Wrote {out}" in result.stdout
    assert "2 rows (one per document) × 8 columns" in result.stdout
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["document_id", "filename", "enrollment",
                                   "enrollment__evidence", "enrollment__page", "sponsor",
                                   "sponsor__evidence", "sponsor__page"]
    assert frame.iloc[0]["enrollment__page"] == "3"


def test_export_json_output_and_long_form(seeded: None, tmp_path: Path) -> None:
    out = tmp_path / "long.csv"
    data = run_cli("export", "trials", "-f", "csv-long", "-o", str(out), "--min-confidence",
                   "0.5", "--include-confidence", "--json").json()
    assert data["path"] == str(out) and data["rows"] == 4 and data["flagged"] == 1
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(frame) == 4 and "flagged" in frame.columns and "confidence" in frame.columns


def test_export_default_path_is_under_the_exports_folder(
        seeded: None, isolated_home: Path) -> None:
    data = run_cli("export", "trials", "-f", "parquet", "--json").json()
    assert Path(data["path"]).parent == isolated_home / "exports"
    assert len(pd.read_parquet(data["path"])) == 2


@pytest.mark.parametrize(("args", "code", "message"), [
    (["-f", "xls"], 4, "unknown export format 'xls'"),
    (["--min-confidence", "2"], 4, "min_confidence must be a number between 0 and 1"),
    (["--job", "nope"], 4, "'nope' is not a job id"),
    (["--job", "00000000-0000-0000-0000-000000000000"], 3, "has no job"),
])
def test_export_option_errors_are_clear(seeded: None, tmp_path: Path, args: list[str],
                                        code: int, message: str) -> None:
    result = run_cli("export", "trials", "-o", str(tmp_path / "x.csv"), *args)
    assert result.exit_code == code
    assert message in result.stderr and "Traceback" not in result.stderr


def test_export_path_errors_name_the_path(seeded: None, tmp_path: Path) -> None:
    is_dir = run_cli("export", "trials", "-o", str(tmp_path))
    assert is_dir.exit_code == 4 and f"{tmp_path} is a directory" in is_dir.stderr
    missing = run_cli("export", "trials", "-o", str(tmp_path / "no" / "x.csv"), "--json")
    assert missing.exit_code == 4
    assert missing.json()["error"]["instance"] == str(tmp_path / "no" / "x.csv")
    taken = tmp_path / "taken.csv"
    taken.write_text("keep")
    conflict = run_cli("export", "trials", "-o", str(taken))
    assert conflict.exit_code == 5 and str(taken) in conflict.stderr
    assert "--force" in conflict.stderr and taken.read_text() == "keep"
    assert run_cli("export", "trials", "-o", str(taken), "--force").exit_code == 0
    assert taken.read_text().startswith("document_id,filename")


def test_unknown_project(db_url: str, tmp_path: Path) -> None:
    result = run_cli("export", "ghost", "-o", str(tmp_path / "x.csv"))
    assert result.exit_code == 3 and "no project with id or name 'ghost'" in result.stderr


def test_export_via_flow(prefect_harness: None, seeded: None, tmp_path: Path) -> None:
    out = tmp_path / "flow.json"
    result = run_cli("export", "trials", "-f", "json", "-o", str(out), "--via-flow", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["rows"] == 2 and out.exists()


def test_export_via_flow_reports_errors_plainly(
        prefect_harness: None, seeded: None, tmp_path: Path) -> None:
    taken = tmp_path / "taken.csv"
    taken.write_text("keep")
    result = run_cli("export", "trials", "-o", str(taken), "--via-flow")
    assert result.exit_code == 5 and "already exists" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and taken.read_text() == "keep"


def test_export_refuses_devices_fifos_and_symlinks(seeded: None, tmp_path: Path) -> None:
    import os
    import stat

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    device = tmp_path / "null-device"
    try:
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null
    except PermissionError:  # not root: a device node cannot be made here
        device = Path("/dev/null")
    target = tmp_path / "target.csv"
    target.write_text("keep me")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    for path, what in ((fifo, "a named pipe (FIFO)"), (device, "a character device"),
                       (link, "a symbolic link")):
        result = run_cli("export", "trials", "-o", str(path), "--force")
        assert result.exit_code == 4, result.stderr
        assert what in result.stderr and "Traceback" not in result.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and stat.S_ISCHR(device.lstat().st_mode)
    assert link.is_symlink() and target.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == []


def test_export_replaces_a_file_atomically(seeded: None, tmp_path: Path) -> None:
    import os

    out = tmp_path / "trials.csv"
    out.write_text("old")
    before = os.stat(out).st_ino
    assert run_cli("export", "trials", "-o", str(out), "--force").exit_code == 0
    # A new file renamed over the old one (a reader holding the old one keeps it whole).
    assert os.stat(out).st_ino != before and out.read_text().startswith("document_id,")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_export_to_standard_output(seeded: None, tmp_path: Path) -> None:
    result = run_cli("export", "trials", "-f", "csv-long", "-o", "-")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("document_id,filename,variable")
    assert len(result.stdout.splitlines()) == 5
    assert "Wrote standard output" in result.stderr
    assert not (tmp_path / "-").exists()
    binary = run_cli("export", "trials", "-f", "xlsx", "-o", "-", "--json")
    assert binary.exit_code == 4 and "text formats only" in binary.json()["error"]["detail"]


def test_export_job_by_the_prefix_job_list_shows(seeded: None, tmp_path: Path,
                                                 session: Session) -> None:
    from sqlalchemy import select

    from extraction.models import ProcessingJob

    job_id = str(session.scalar(select(ProcessingJob.id)))
    result = run_cli("export", "trials", "--job", job_id[:8], "-o", str(tmp_path / "x.csv"),
                     "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["job_ids"] == [job_id]
