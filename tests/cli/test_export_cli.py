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
