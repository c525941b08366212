"""What a run's outcome means to the user: its status, its exit code, the default export."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from extraction import db
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm
from tests.cli_helpers import run_cli


@pytest.fixture
def llm(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model=["fake-model", "fake-model-2"]) as server:
        point_at_fake_llm(monkeypatch, server.base_url, llm_max_reasks=0)
        yield server


def test_a_run_where_every_cell_fails_is_failed_and_keeps_the_export(
        db_url: str, llm: FakeLLMServer, tmp_path: Path) -> None:
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), 3)
    good = run_cli("run", "full", "trials", "--json")
    assert good.exit_code == 0, good.stderr
    first = good.json()["id"]

    llm.fail_rate("schema_violation", 1.0)  # every answer fails validation
    bad = run_cli("run", "full", "trials", "--model", "fake-model-2", "--json")
    assert bad.exit_code == 11, bad.stdout + bad.stderr
    job = bad.json()
    assert job["status"] == "FAILED" and job["documents_completed"] == 0
    assert job["error"].startswith("no answer at all: all 15 cells failed")
    human = run_cli("job", "show", job["id"][:8])
    assert "FAILED" in human.stdout

    out = tmp_path / "long.csv"
    exported = run_cli("export", "trials", "-f", "csv-long", "-o", str(out), "--json")
    assert exported.exit_code == 0, exported.stderr
    assert exported.json()["job_ids"] == [first]
    lines = out.read_text().splitlines()[1:]
    assert len(lines) == 15 and not any(",failed," in line for line in lines)
