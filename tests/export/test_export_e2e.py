"""Exports of real runs: a sample then a full run over the fake LLM, exported by the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from extraction import db
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm
from tests.cli_helpers import run_cli


@pytest.fixture
def llm(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model="fake-model") as server:
        point_at_fake_llm(monkeypatch, server.base_url)
        yield server


def test_sample_then_full_run_exports_the_full_runs_values(
        db_url: str, llm: FakeLLMServer, tmp_path: Path) -> None:
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), 4)
    sample = run_cli("run", "sample", "trials", "--n", "2", "--json")
    assert sample.exit_code == 0, sample.stderr
    full = run_cli("run", "full", "trials", "--json")
    assert full.exit_code == 0, full.stderr
    full_id = full.json()["id"]

    long = tmp_path / "long.csv"
    done = run_cli("export", "trials", "-f", "csv-long", "-o", str(long), "--json").json()
    assert done["rows"] == 4 * 5 and done["job_ids"] == [full_id]
    frame = pd.read_csv(long, dtype=str, keep_default_na=False)
    assert set(frame["job_id"]) == {full_id} and set(frame["status"]) == {"ok"}

    only_sample = tmp_path / "sample.csv"
    run_cli("export", "trials", "-o", str(only_sample), "--job", sample.json()["id"])
    assert len(pd.read_csv(only_sample)) == 2

    book = tmp_path / "trials.xlsx"
    assert run_cli("export", "trials", "-f", "xlsx", "-o", str(book)).exit_code == 0
    rows = list(openpyxl.load_workbook(book)["data"].iter_rows(values_only=True))
    header, data = rows[0], rows[1:]
    enrollment = [r[header.index("enrollment")] for r in data]
    # trial documents i say "In total 100+i participants"; the fake LLM reads them back.
    assert sorted(enrollment) == [100, 101, 102, 103]
    assert all(isinstance(r[header.index("randomised")], bool) for r in data)
