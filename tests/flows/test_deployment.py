"""The deployments of prefect.yaml on a real Prefect server with a process worker.

A real ``prefect server start`` (temporary PREFECT_HOME, offline), a process work pool,
``prefect deploy --all`` from this checkout's prefect.yaml, and ``prefect worker start``; then
``extractflow run sample … --deployment`` triggers the deployed flow and follows the job to
COMPLETE (the flow run shows the parameters that ran and our log lines), and a full run
cancelled from Prefect's side stops cleanly on the worker's SIGTERM: its job ends CANCELLED
with its summary, no error-level log line, and Prefect's Retry of that run resumes the job.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extraction import db
from extraction.models import JobStatus
from extraction.run import jobs
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm
from tests.cli_helpers import run_cli
from tests.flows.conftest import PREFECT, ROOT, stop_worker

pytestmark = pytest.mark.slow
__all__ = ["PREFECT", "ROOT"]  # the server (prefect_server) is the session's: tests/flows/conftest.py


@pytest.fixture
def worker(prefect_server: dict[str, str], db_url: str, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    """A process worker whose flow runs use this test's database and a fake LLM."""
    with FakeLLMServer(model="fake-model") as llm:
        point_at_fake_llm(monkeypatch, llm.base_url)
        env = {**prefect_server, **{k: v for k, v in os.environ.items()
                                     if k.startswith("EXTRACTFLOW_")},
               # the pool is polled every second (Prefect's default: 10 s), so a new or
               # retried flow run is picked up at once rather than up to 10 s later
               "PREFECT_WORKER_QUERY_SECONDS": "1"}
        log = (tmp_path / "worker.log").open("wb")
        process = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "extractflow", "--type", "process",
             "--prefetch-seconds", "5"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        try:
            yield llm
        finally:
            stop_worker(process)
            log.close()


def _read_run(flow_run_id: str) -> tuple[Any, list[Any], list[Any]]:
    """A flow run, its log lines and its artifacts, from the server's API."""
    import asyncio
    import uuid

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


def _api_settings(env: dict[str, str]):  # type: ignore[no-untyped-def]
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]})


def test_sample_deployment_runs_on_a_worker_to_complete(
    prefect_server: dict[str, str], worker: FakeLLMServer, db_url: str
) -> None:
    with db.session_scope(db_url) as s:
        project = make_project(s)
        add_trial_documents(s, project, 3)
    with _api_settings(prefect_server):
        result = run_cli("run", "sample", "trials", "--n", "3", "--deployment", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    job = result.json()
    assert job["status"] == "COMPLETE" and job["documents_completed"] == 3
    assert job["flow_run_id"]
    assert worker.total_requests == 3  # per_document: one call per document
    with _api_settings(prefect_server):
        deadline = time.monotonic() + 30  # the job is COMPLETE a moment before its flow run
        while True:
            run, logs, _ = _read_run(job["flow_run_id"])
            state = run.state.type.value
            done = any(log.message.startswith("job_finished") for log in logs)
            if state == "COMPLETED" and done or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    assert run.name == f"trials/sample-{job['id'][:8]}" and state == "COMPLETED"
    assert {f"job:{job['id']}", "project:trials", "kind:sample"} <= set(run.tags)
    # the deployment's default is n=10: the run shows the 3 that ran
    assert run.parameters["n"] == 3 and run.parameters["job_id"] == job["id"]
    lines = [log.message for log in logs]
    assert any(m.startswith("plan: a sample of 3") for m in lines), lines
    assert any(m.startswith("progress: 3/3 documents") for m in lines), lines


def test_cancelling_the_flow_run_in_prefect_cancels_the_job(
    prefect_server: dict[str, str], worker: FakeLLMServer, db_url: str, tmp_path: Path
) -> None:
    worker.latency = 0.5
    with db.session_scope(db_url) as s:
        project = make_project(s)
        add_trial_documents(s, project, 40)
    with _api_settings(prefect_server):
        started = run_cli("run", "full", "trials", "--deployment", "--no-wait", "--json")
        assert started.exit_code == 0, started.stdout + started.stderr
        job_id = started.json()["id"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and worker.total_requests < 4:
            time.sleep(0.2)
        assert worker.total_requests >= 4, "the deployed run never started calling the LLM"

        import asyncio
        import uuid

        from prefect.client.orchestration import get_client
        from prefect.states import Cancelling

        async def cancel(flow_run_id: str) -> None:
            async with get_client() as client:
                await client.set_flow_run_state(uuid.UUID(flow_run_id), Cancelling(),
                                                force=True)

        with db.session_scope(db_url) as s:
            flow_run_id = jobs.get_job(s, job_id).flow_run_id
        assert flow_run_id
        asyncio.run(cancel(flow_run_id))
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            with db.session_scope(db_url) as s:
                status = jobs.get_job(s, job_id).status
            if status is JobStatus.CANCELLED:
                break
            time.sleep(0.5)
    assert status is JobStatus.CANCELLED
    calls_at_cancel = worker.total_requests
    time.sleep(2)
    assert worker.total_requests - calls_at_cancel <= 4  # killed: no new calls go out
    with db.session_scope(db_url) as s:
        job = jobs.get_job(s, job_id)
        assert job.documents_completed < 40 and job.error == "flow run cancelled in Prefect"
        done_at_cancel, progress_at_cancel = job.documents_completed, job.progress
        assert job.summary  # written by the run itself, not only the hook
    with _api_settings(prefect_server):
        deadline = time.monotonic() + 30
        while True:
            run, logs, artifacts = _read_run(flow_run_id)
            if run.state.type.value == "CANCELLED" and any(
                    log.message.startswith("job_finished") for log in logs) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert run.state.type.value == "CANCELLED", run.state
        # a clean stop: no error-level line, no crash, no traceback
        assert [log.message for log in logs if log.level >= 40] == []
        text = "\n".join(log.message for log in logs)
        assert "Crash detected" not in text and "Traceback" not in text
        assert any(m.startswith("job_finished: CANCELLED") for m in text.splitlines())
        by_key = {a.key: a for a in artifacts}
        assert "CANCELLED" in by_key[f"job-{job_id[:8]}-summary"].data
        assert by_key[f"job-{job_id[:8]}-progress"].data == progress_at_cancel

        # Retry in the UI: the same flow run is scheduled again; it resumes the job
        from prefect.states import AwaitingRetry

        async def retry() -> None:
            async with get_client() as client:
                await client.set_flow_run_state(uuid.UUID(flow_run_id),
                                                AwaitingRetry(message="Retry from the UI"),
                                                force=True)

        # The worker's cancellation manager marks the run Cancelled once it has stopped the
        # process, seconds after the flow itself ended: a Retry before that is overwritten
        # (Prefect's race, a user's second click would do). Retry after it, as a user would.
        deadline = time.monotonic() + 60
        while "Cancelled flow run" not in (tmp_path / "worker.log").read_text(errors="replace") \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        calls_before = worker.total_requests
        worker.latency = 0.0
        asyncio.run(retry())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with db.session_scope(db_url) as s:
                job = jobs.get_job(s, job_id)
                if job.status is JobStatus.COMPLETE:
                    break
            time.sleep(0.5)
    assert job.status is JobStatus.COMPLETE and job.documents_completed == 40
    # cells done before the cancel are kept, not asked again
    assert worker.total_requests - calls_before <= 40 - done_at_cancel
