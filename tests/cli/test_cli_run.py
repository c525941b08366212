"""`extractflow run …`: sample and full runs from the CLI, --no-wait, resume, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from extraction import codebook, db
from extraction.models import JobKind, JobStatus
from extraction.run import jobs
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm
from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def llm(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    from prefect.settings import PREFECT_API_URL

    with FakeLLMServer(model="fake-model") as server:
        point_at_fake_llm(monkeypatch, server.base_url)
        # Processes started by --no-wait talk to the same (test) Prefect API.
        monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
        yield server


def _documents(db_url: str, n: int) -> list[str]:
    with db.session_scope(db_url) as s:
        return [str(d.id) for d in add_trial_documents(s, make_project(s), n)]


def test_run_sample_prints_the_job_and_its_outcome(db_url: str, llm: FakeLLMServer) -> None:
    _documents(db_url, 5)
    result = run_cli("run", "sample", "trials", "--n", "3", "--seed", "11", "--json")
    assert result.exit_code == 0, result.stderr
    job = result.json()
    assert job["status"] == "COMPLETE" and job["documents_completed"] == 3
    assert job["parameters"]["seed"] == 11 and llm.total_requests == 3
    human = run_cli("run", "sample", "trials", "--n", "3", "--seed", "11")
    assert human.exit_code == 0
    assert "(SAMPLE) COMPLETE: 3 of 3 documents done" in human.stdout
    assert "0 LLM calls, 15 cells re-used" in human.stdout  # same sample: all re-used
    results = run_cli("job", "results", job["id"], "--variable", "enrollment", "--json").json()
    assert len(results) == 3 and all(r["status"] == "ok" for r in results)


def test_run_sample_on_chosen_documents_per_variable(db_url: str, llm: FakeLLMServer) -> None:
    ids = _documents(db_url, 4)
    result = run_cli("run", "sample", "trials", "--docs", f"{ids[2]},{ids[0]}",
                     "--mode", "per_variable", "--json")
    assert result.exit_code == 0, result.stderr
    job = result.json()
    assert job["mode"] == "per_variable" and job["documents_total"] == 2
    assert llm.total_requests == 2 * 5


def test_run_errors_are_clear(db_url: str, llm: FakeLLMServer) -> None:
    ghost = run_cli("run", "sample", "ghost")
    assert ghost.exit_code == 3 and "no project with id or name 'ghost'" in ghost.stderr
    with db.session_scope(db_url) as s:
        make_project(s)
    empty = run_cli("run", "full", "trials", "--json")
    assert empty.exit_code == 4
    assert "has no documents" in empty.json()["error"]["detail"]
    _documents_for = run_cli("run", "sample", "trials", "--n", "2", "--docs", "x")
    assert _documents_for.exit_code == 4 and "either --n or --docs" in _documents_for.stderr
    bad_id = run_cli("run", "sample", "trials", "--docs", "not-an-id")
    assert bad_id.exit_code == 4 and "not a document id" in bad_id.stderr
    with db.session_scope(db_url) as s:
        add_trial_documents(s, codebook.get_project(s, "trials"), 1)
    mode = run_cli("run", "full", "trials", "--mode", "sideways")
    assert mode.exit_code == 4 and "mode must be one of" in mode.stderr
    missing = run_cli("run", "full", "trials", "--deployment", "--json")
    assert missing.exit_code == 7
    assert "no deployment 'full-run/full-run'" in missing.json()["error"]["detail"]
    with db.session_scope(db_url) as s:  # a job that could not be launched is not left over
        assert jobs.list_jobs(s, codebook.get_project(s, "trials")) == []
    for output in (ghost, empty, mode, missing):
        assert "Traceback" not in output.stdout + output.stderr


def test_no_wait_returns_at_once_and_job_watch_follows(db_url: str, llm: FakeLLMServer) -> None:
    _documents(db_url, 6)
    started = run_cli("run", "full", "trials", "--no-wait", "--json")
    assert started.exit_code == 0, started.stderr
    job = started.json()
    assert job["status"] in {"PENDING", "PROCESSING"}
    watched = run_cli("job", "watch", job["id"][:8], "--json")
    assert watched.exit_code == 0
    assert watched.json()["status"] == "COMPLETE" and llm.total_requests == 6


def test_resume_refuses_finished_and_live_jobs(db_url: str, llm: FakeLLMServer) -> None:
    _documents(db_url, 2)
    done = run_cli("run", "full", "trials", "--json").json()
    finished = run_cli("run", "resume", done["id"])
    assert finished.exit_code == 6 and "start a new run instead" in finished.stderr.lower()
    from config.settings import get_settings
    from extraction.run.plan import create_run_job

    with db.session_scope(db_url) as s:
        live = create_run_job(s, get_settings(), kind=JobKind.FULL, project="trials")
        jobs.start_job(s, live)
        live_id = str(live.id)
    busy = run_cli("run", "resume", live_id)
    assert busy.exit_code == 5 and "still running" in busy.stderr
    forced = run_cli("run", "resume", live_id, "--force", "--json")
    assert forced.exit_code == 0, forced.stderr
    assert forced.json()["status"] == "COMPLETE"
    with db.session_scope(db_url) as s:
        assert jobs.get_job(s, live_id).status is JobStatus.COMPLETE


@pytest.fixture(scope="module")
def ephemeral_prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PREFECT_HOME for the real CLI processes of this module: the first run (sqlite)
    starts on a fresh home, as a new user's does, and migrates Prefect's database there
    (~14 s on 2 cores); the second (postgres, the same Prefect side) reuses it."""
    return tmp_path_factory.mktemp("prefect")


@pytest.mark.slow
def test_a_real_cli_process_shows_no_prefect_noise(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ephemeral_prefect_home: Path
) -> None:
    """The console script on Prefect's ephemeral API: outcome on stdout, nothing else."""
    with FakeLLMServer(model="fake-model") as server:
        point_at_fake_llm(monkeypatch, server.base_url)
        _documents(db_url, 3)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(ephemeral_prefect_home))
        done = subprocess.run([sys.executable, "-m", "extraction", "run", "sample", "trials",
                               "--n", "3"], env=env, cwd=tmp_path, capture_output=True, check=False,
                              text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "(SAMPLE) COMPLETE: 3 of 3 documents done" in done.stdout
    for noise in ("Traceback", "Error flushing events", "CancelledError", "database is locked"):
        assert noise not in done.stderr + done.stdout
