"""What the Prefect UI shows of a run, read back from a real Prefect server's API.

The server is the one ``extractflow server start`` runs (``flows/local_server.py``): a real
``prefect server start`` on a free port with SQLite under a temporary EXTRACTFLOW_HOME. A
CLI-started run must show the parameters that ran, our own log lines, the preview and
failures artifacts, its ``<project>/<kind>-<job8>`` name and project/kind tags; a run that
fails before it has a job is named and tagged too; the CLI finds the server by itself.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from extraction import db
from flows import local_server
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm
from tests.cli_helpers import run_cli

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_server.ServerInfo]:
    """``extractflow server start``'s server, in a home of its own, for the module."""
    home = tmp_path_factory.mktemp("server-home")
    settings = Settings(home=home)
    # no run host: these tests' commands run in-process, as without one (test_run_host.py)
    info, started = local_server.start(settings, port=_free_port(), run_host=False)
    assert started
    try:
        yield info
    finally:
        local_server.stop(settings)


@pytest.fixture
def on_server(ui_server: local_server.ServerInfo, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[local_server.ServerInfo]:
    """This test's Prefect client talks to the server (even under the session's harness).

    The CLI runs a local flow in a thread of its own, and a new thread reads Prefect's
    *global* settings context, not this thread's temporary settings: the global context is
    re-read from the environment too (as a new CLI process would read it), and restored.
    """
    from prefect import context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    previous = os.environ.get("PREFECT_API_URL")
    monkeypatch.setenv("PREFECT_API_URL", ui_server.api_url)  # what `connect` would set
    context.refresh_global_settings_context()
    try:
        with temporary_settings({PREFECT_API_URL: ui_server.api_url}):
            yield ui_server
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        context.refresh_global_settings_context()


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model="fake-model") as server:
        point_at_fake_llm(monkeypatch, server.base_url)
        yield server


def _read(flow_run_id: str) -> tuple[Any, list[Any], list[Any]]:
    """The flow run, its log lines and its artifacts, as the UI gets them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async def read() -> tuple[Any, list[Any], list[Any]]:
        async with get_client() as client:
            run = await client.read_flow_run(uuid.UUID(flow_run_id))
            logs = await client.read_logs(log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(flow_run_id)])))
            artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(flow_run_id)])))
            return run, logs, artifacts

    return asyncio.run(read())


def _until_final(flow_run_id: str, last_line: str = "job_finished", timeout: float = 30
                 ) -> tuple[Any, list[Any], list[Any]]:
    """The run once Prefect holds it final and its last log line is stored (log lines are
    sent in batches, a moment after they are written)."""
    deadline = time.monotonic() + timeout
    while True:
        run, logs, artifacts = _read(flow_run_id)
        final = run.state is not None and run.state.is_final()
        if final and any(last_line in log.message for log in logs) \
                or time.monotonic() > deadline:
            return run, logs, artifacts
        time.sleep(0.5)


def test_a_cli_run_shows_what_ran_our_logs_and_a_results_preview(
    on_server: local_server.ServerInfo, llm: FakeLLMServer, db_url: str
) -> None:
    with db.session_scope(db_url) as s:
        project = make_project(s)
        add_trial_documents(s, project, 3)
    llm.fail_when("Sponsor1 Labs", "400_context_length")  # trial0001.txt fails, not retried
    result = run_cli("run", "sample", "trials", "--n", "3", "--seed", "2", "--json")
    job = result.json()
    assert job["flow_run_id"] and job["documents_failed"] == 1, result.stdout + result.stderr
    run, logs, artifacts = _until_final(job["flow_run_id"])
    short = job["id"][:8]

    # Parameters tab: what ran, not the flow's defaults
    params = run.parameters
    assert (params["n"], params["seed"], params["job_id"]) == (3, 2, job["id"])
    assert (params["mode"], params["model"]) == ("per_document", "fake-model")
    # name and tags
    assert run.name == f"trials/sample-{short}"
    assert {"project:trials", "kind:sample", f"job:{job['id']}"} <= set(run.tags)
    # Logs tab: our lines — the plan, progress, each failed document with why, the summary
    lines = [log.message for log in logs]
    assert any(m.startswith("plan: a sample of 3 (n=3, seed 2) of project trials") and
               "mode per_document" in m and "model fake-model" in m and "sponsor v1" in m
               for m in lines), lines
    assert any(m.startswith("progress: 3/3 documents (100%), 1 failed") for m in lines), lines
    failures = [m for m in lines if m.startswith("extraction_failed: trial0001.txt")]
    assert failures and "context" in failures[0].lower(), lines
    assert "Sponsor1 Labs sponsored" not in "\n".join(lines)  # never the document's text
    assert any(m.startswith("job_finished: COMPLETE") for m in lines), lines
    # Artifacts: summary with project and the command for the results, preview, failures
    by_key = {a.key: a for a in artifacts}
    summary = by_key[f"job-{short}-summary"].data
    assert "trials" in summary and f"extractflow job results {short}" in summary
    assert "sponsor v1" in summary
    preview = by_key[f"job-{short}-preview"]
    assert preview.type == "table"
    assert "trial0000.txt" in preview.data and "Sponsor0 Labs" in preview.data
    assert by_key[f"job-{short}-progress"].data == 100.0
    assert "trial0001.txt" in by_key[f"job-{short}-failures"].data


def test_a_run_that_fails_before_it_has_a_job_is_named_and_tagged(
    on_server: local_server.ServerInfo, db_url: str
) -> None:
    from flows.sample_run import sample_run

    state = asyncio.run(sample_run(project="no-such-project", return_state=True))
    assert state.is_failed() and "no-such-project" in state.message
    run, logs, _ = _until_final(str(state.state_details.flow_run_id), "could not start")
    assert run.name == "no-such-project/sample-no-job"
    assert {"project:no-such-project", "kind:sample"} <= set(run.tags)
    assert any("could not start" in log.message for log in logs)


def test_the_cli_finds_the_local_server_by_itself_and_stays_quiet(
    ui_server: local_server.ServerInfo, llm: FakeLLMServer, db_url: str
) -> None:
    """A real `extractflow` process, no PREFECT_API_URL: the server's state file is enough."""
    with db.session_scope(db_url) as s:
        project = make_project(s)
        add_trial_documents(s, project, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(EXTRACTFLOW_HOME=str(Path(ui_server.home).parent), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "extraction", "run", "sample", "trials", "--n", "2"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    link = [line for line in done.stdout.splitlines() if line.startswith("Flow run: ")]
    assert link and link[0].startswith(f"Flow run: {ui_server.ui_url}/runs/flow-run/")
    # the terminal stays as quiet as before: none of the run's log lines
    assert "plan:" not in done.stdout + done.stderr
    assert "Finished in state" not in done.stdout + done.stderr
    status = run_cli("server", "status", "--json")  # this test's own home: none there
    assert status.exit_code == 1 and status.json()["running"] is False


# ---------------------------------------------------------------- in a real browser

CHROMIUM = os.environ.get("EXTRACTFLOW_CHROMIUM") or shutil.which("chromium") \
    or "/usr/bin/chromium"


def _chromium_or_skip() -> None:
    """Headless Debian Chromium through Playwright (``make browser`` installs it); skipped
    without it, except in CI (``CI=true``), where a missing browser fails the run."""
    in_ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:  # pragma: no cover - playwright is a dev dependency
        if in_ci:
            pytest.fail(f"playwright is not installed ({exc}); CI=true: browser tests must run")
        pytest.skip("playwright is not installed")
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM}: run `make browser`"
        if in_ci:
            pytest.fail(message + " (CI=true: browser tests must run)")
        pytest.skip(message)


def test_the_run_page_shows_the_name_our_log_lines_and_the_preview(
    on_server: local_server.ServerInfo, llm: FakeLLMServer, db_url: str, tmp_path: Path
) -> None:
    """The Prefect UI itself, as a user opens the link the CLI prints: the run's name, a log
    line of ours, the parameters that ran, the preview artifact. Screenshots go to
    ``$UI_SCREENSHOTS_DIR`` when set."""
    _chromium_or_skip()
    shots = Path(os.environ.get("UI_SCREENSHOTS_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with db.session_scope(db_url) as s:
        project = make_project(s)
        add_trial_documents(s, project, 3)
    job = run_cli("run", "sample", "trials", "--n", "3", "--json").json()
    _until_final(job["flow_run_id"])
    short = job["id"][:8]
    from playwright.sync_api import sync_playwright  # its loop: after the asyncio calls

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(local_server.flow_run_url(job["flow_run_id"], on_server.api_url))
            page.get_by_text(f"trials/sample-{short}").first.wait_for(timeout=60_000)
            page.get_by_text("plan: a sample of 3").first.wait_for(timeout=60_000)
            page.screenshot(path=str(shots / "flow-run-logs.png"), full_page=True)
            page.get_by_text("Parameters", exact=True).first.click()
            page.get_by_text("per_document").first.wait_for(timeout=30_000)
            page.screenshot(path=str(shots / "flow-run-parameters.png"), full_page=True)
            page.get_by_text("Artifacts", exact=True).first.click()
            page.get_by_text(f"job-{short}-preview").first.wait_for(timeout=30_000)
            page.screenshot(path=str(shots / "flow-run-artifacts.png"), full_page=True)
            page.get_by_text(f"job-{short}-preview").first.click()
            page.get_by_text("Sponsor0 Labs").first.wait_for(timeout=30_000)
            page.screenshot(path=str(shots / "preview-artifact.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
