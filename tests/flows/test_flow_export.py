"""The export-dataset flow under Prefect's test harness: file, result and artifact."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openpyxl
import pytest
from prefect.artifacts import Artifact
from sqlalchemy.orm import Session

from flows.export_dataset import export_dataset
from testing.extraction_factory import Cell, add_documents, add_job, make_project


@pytest.fixture
def project(session: Session) -> str:
    project = make_project(session, "Flow Trials", [{"name": "enrollment", "type": "NUMBER"},
                                                    {"name": "sponsor", "type": "TEXT"}])
    d0, d1 = add_documents(session, project, 2)
    add_job(session, project, {(d0, "enrollment"): 120, (d0, "sponsor"): "Acme",
                               (d1, "enrollment"): Cell(8, confidence=0.3)})
    session.commit()
    return project.name


def test_flow_writes_the_file_and_leaves_an_artifact(
        prefect_harness: None, project: str, tmp_path: Path) -> None:
    output = tmp_path / "trials.xlsx"
    result = asyncio.run(export_dataset(project, format="xlsx", output=str(output),
                                        min_confidence=0.5))
    assert result["path"] == str(output) and result["rows"] == 2
    assert result["columns"] == 6  # document_id, filename, 2 values, 2 __flagged
    data = list(openpyxl.load_workbook(output)["data"].iter_rows(values_only=True))
    assert data[1][2] == 120 and data[2][2] is None  # 0.3 < 0.5: blanked

    artifact = Artifact.get("export-flow-trials")
    assert artifact is not None
    assert str(output) in artifact.data and "| Rows | 2 (one per document) |" in artifact.data
    assert "| Columns | 6 |" in artifact.data


def test_flow_fails_clearly_on_an_existing_file(
        prefect_harness: None, project: str, tmp_path: Path) -> None:
    output = tmp_path / "taken.csv"
    output.write_text("keep")
    state = asyncio.run(export_dataset(project, output=str(output), return_state=True))
    assert state.is_failed()
    assert "already exists" in (state.message or "") or "already exists" in str(
        state.result(raise_on_failure=False))
    assert output.read_text() == "keep"
