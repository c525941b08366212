"""The sample-run and full-run flows on Prefect's test harness, against the fake LLM server.

Covers the issue's "done when": a sample job of 10 documents, values and confidence stored,
progress while running, logged errors and continuation, cancellation from the job row and
from Prefect, resume after kill -9 with no duplicates, zero calls on an unchanged re-run, and
the global limit holding across two concurrent runs in two processes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from extraction import db
from extraction.models import Extraction, JobKind, JobStatus, LogLevel, ProcessingJob
from extraction.run import jobs, progress, views
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm
from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def llm(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model="fake-model") as server:
        point_at_fake_llm(monkeypatch, server.base_url,
                          global_concurrency_limit_name=f"xf-{uuid.uuid4().hex[:8]}")
        yield server


def _project(db_url: str, n: int) -> None:
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), n)


def _job(db_url: str, job_id: str | uuid.UUID) -> dict[str, Any]:
    with db.session_scope(db_url) as s:
        job = jobs.get_job(s, job_id)
        return views.job_to_dict(job, project_name="trials")


def _row_count(db_url: str, job_id: str) -> int:
    with db.session_scope(db_url) as s:
        return s.scalar(select(func.count(Extraction.id))
                        .where(Extraction.job_id == uuid.UUID(job_id))) or 0


def _flow_run(flow_run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    async def read() -> Any:
        async with get_client() as client:
            return await client.read_flow_run(uuid.UUID(flow_run_id))

    return asyncio.run(read())


def _artifacts(flow_run_id: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(flow_run_id)])))

    return asyncio.run(read())


def test_sample_run_of_ten_documents(db_url: str, llm: FakeLLMServer) -> None:
    from flows.sample_run import sample_run

    _project(db_url, 15)
    result = asyncio.run(sample_run(project="trials", n=10, seed=3))
    assert result["status"] == "COMPLETE" and result["kind"] == "SAMPLE"
    assert (result["documents_total"], result["documents_completed"]) == (10, 10)
    assert llm.total_requests == 10  # per_document: one call per document
    assert result["parameters"]["seed"] == 3
    assert _row_count(db_url, result["id"]) == 50
    summary = result["summary"]["variables"]
    assert [v["variable"] for v in summary][:2] == ["sponsor", "phase"]
    assert summary[0]["fill_rate"] == 1.0 and summary[0]["mean_confidence"] > 0
    run = _flow_run(result["flow_run_id"])
    assert run.name == f"trials/sample-{result['id'][:8]}"
    assert {f"job:{result['id']}", "project:trials", "kind:sample"} <= set(run.tags)
    # the Parameters tab shows what ran: the resolved mode and model, the job it worked on
    assert run.parameters["mode"] == "per_document" and run.parameters["model"] == "fake-model"
    assert run.parameters["seed"] == 3 and run.parameters["job_id"] == result["id"]
    artifacts = {a.key: a for a in _artifacts(result["flow_run_id"])}
    short = result["id"][:8]
    assert artifacts[f"job-{short}-progress"].data == 100.0
    assert "trials" in artifacts[f"job-{short}-summary"].data
    preview = artifacts[f"job-{short}-preview"]
    assert preview.type == "table" and "confidence" in preview.data
    again = asyncio.run(sample_run(project="trials", n=10, seed=3))
    assert sorted(again["summary"]["variables"][0].items()) != [] and llm.total_requests == 10
    assert again["cells_reused"] == 50 and again["llm_calls"] == 0


def test_full_run_logs_failures_goes_on_and_shows_progress(
    db_url: str, llm: FakeLLMServer
) -> None:
    from flows.full_run import full_run

    _project(db_url, 16)
    llm.latency = 0.1
    llm.fail_when("Sponsor5 Labs", "500")
    seen: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            with db.session_scope(db_url) as s:
                job = s.scalar(select(ProcessingJob))
                if job is not None:
                    seen.append(job.progress)
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        result = asyncio.run(full_run(project="trials"))
    finally:
        done.set()
        poller.join()
    assert result["status"] == "COMPLETE"
    assert (result["documents_completed"], result["documents_failed"]) == (15, 1)
    assert any(0 < p < 100 for p in seen), "progress is written while the run goes on"
    with db.session_scope(db_url) as s:
        errors = progress.job_logs(s, jobs.get_job(s, result["id"]), level=LogLevel.ERROR)
        assert len(errors) == 1 and errors[0].details["filename"] == "trial0005.txt"
        assert errors[0].details["attempts"] >= 2


def _start_in_thread(flow: Any, **params: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        box["state"] = asyncio.run(flow(return_state=True, **params))

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def _wait_for(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_job_cancel_command_stops_new_calls_and_keeps_work(
    db_url: str, llm: FakeLLMServer
) -> None:
    from flows.full_run import full_run

    _project(db_url, 40)
    llm.latency = 0.2
    thread, box = _start_in_thread(full_run, project="trials")
    _wait_for(lambda: llm.total_requests >= 6)
    with db.session_scope(db_url) as s:
        job_id = str(s.scalar(select(ProcessingJob.id)))
    cancelled = run_cli("job", "cancel", job_id[:8], "--json")  # what a user types
    assert cancelled.exit_code == 0, cancelled.stderr
    assert cancelled.json()["status"] == "CANCELLED"
    thread.join(30)
    state = box["state"]
    assert state.is_cancelled()
    calls = llm.total_requests
    assert calls < 30
    job = _job(db_url, job_id)
    assert job["status"] == "CANCELLED" and job["error"] == "cancelled by user"
    assert _row_count(db_url, job_id) == 5 * (job["documents_completed"]
                                              + job["documents_failed"]) > 0
    time.sleep(0.5)
    assert llm.total_requests == calls


def test_cancel_in_prefect_stops_an_in_process_run(db_url: str, llm: FakeLLMServer) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    from flows.sample_run import sample_run

    _project(db_url, 30)
    llm.latency = 0.2
    thread, box = _start_in_thread(sample_run, project="trials", n=30)
    _wait_for(lambda: llm.total_requests >= 6)
    with db.session_scope(db_url) as s:
        flow_run_id = s.scalar(select(ProcessingJob.flow_run_id))
    assert flow_run_id

    async def cancel() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(uuid.UUID(flow_run_id), Cancelling(), force=True)

    asyncio.run(cancel())
    thread.join(30)
    assert box["state"].is_cancelled()
    assert _flow_run(flow_run_id).state.is_cancelled()
    with db.session_scope(db_url) as s:
        job = s.scalar(select(ProcessingJob))
        assert job is not None and job.status is JobStatus.CANCELLED
        assert job.error == "flow run cancelled in Prefect"
        assert job.documents_completed < 30


def _subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.update(extra or {})
    return env


def _create_job(db_url: str, kind: JobKind = JobKind.FULL) -> str:
    from config.settings import get_settings
    from extraction.run.plan import create_run_job

    with db.session_scope(db_url) as s:
        return str(create_run_job(s, get_settings(), kind=kind, project="trials").id)


@pytest.mark.slow
def test_resume_after_kill_finishes_without_duplicates(db_url: str, llm: FakeLLMServer) -> None:
    _project(db_url, 24)
    llm.latency = 0.15
    job_id = _create_job(db_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "extraction", "run", "exec", job_id],
        env=_subprocess_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        _wait_for(lambda: _row_count(db_url, job_id) >= 10, timeout=60)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    before = _row_count(db_url, job_id)
    assert 0 < before < 24 * 5
    assert _job(db_url, job_id)["status"] == "PROCESSING"
    requests_before = llm.total_requests
    llm.latency = 0
    from flows.full_run import full_run

    result = asyncio.run(full_run(project="trials", job_id=job_id, force=True))
    assert result["status"] == "COMPLETE" and result["documents_completed"] == 24
    assert _row_count(db_url, job_id) == 24 * 5
    asked_again = llm.total_requests - requests_before
    assert asked_again == 24 - before // 5  # only the documents not written before the kill
    with db.session_scope(db_url) as s:
        events = [e.event for e in progress.job_logs(s, jobs.get_job(s, job_id))]
    assert "job_resumed" in events


@pytest.mark.slow
def test_global_limit_holds_across_two_runs_in_two_processes(
    db_url: str, llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTRACTFLOW_GLOBAL_CONCURRENCY_LIMIT", "6")
    monkeypatch.setenv("EXTRACTFLOW_LLM_CONCURRENCY", "4")
    with db.session_scope(db_url) as s:
        project = make_project(s)
        add_trial_documents(s, project, 12)
        add_trial_documents(s, make_project(s, name="other"), 12, start=100)
    llm.latency = 0.1
    from config.settings import get_settings
    from extraction.run.plan import create_run_job

    with db.session_scope(db_url) as s:
        ids = [str(create_run_job(s, get_settings(), kind=JobKind.FULL, project=p).id)
               for p in ("trials", "other")]
    processes = [subprocess.Popen([sys.executable, "-m", "extraction", "run", "exec", job_id],
                                  env=_subprocess_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for job_id in ids]
    for process in processes:
        assert process.wait(120) == 0, process.stderr.read().decode()[-2000:] \
            if process.stderr else ""
    assert llm.total_requests == 24
    # Each run takes 4 slots of a 6-slot limit: never more than 4 calls in flight together.
    assert llm.max_in_flight <= 4
    for job_id in ids:
        assert _job(db_url, job_id)["status"] == "COMPLETE"


def test_calls_in_flight_never_exceed_the_slots_held_when_the_limit_is_smaller(
    db_url: str, llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The limit on the server (3) is below the process concurrency (8): the run holds 3
    # slots, and more documents than that are in flight, yet the server sees at most 3 calls.
    monkeypatch.setenv("EXTRACTFLOW_GLOBAL_CONCURRENCY_LIMIT", "3")
    monkeypatch.setenv("EXTRACTFLOW_LLM_CONCURRENCY", "8")
    monkeypatch.setenv("EXTRACTFLOW_DOCUMENTS_PER_CHUNK", "8")
    _project(db_url, 16)
    llm.latency = 0.05
    from flows.full_run import full_run

    result = asyncio.run(full_run(project="trials", mode="per_variable"))
    assert result["status"] == "COMPLETE" and result["documents_completed"] == 16
    assert llm.total_requests == 16 * 5
    assert llm.max_in_flight == 3


def test_shards_without_a_work_pool_run_in_this_process_and_say_so(
    db_url: str, llm: FakeLLMServer
) -> None:
    # The test harness is a Prefect server without the full-run-shard deployment.
    _project(db_url, 6)
    from flows.full_run import full_run

    result = asyncio.run(full_run(project="trials", shards=3))
    assert result["status"] == "COMPLETE" and result["documents_completed"] == 6
    assert _row_count(db_url, result["id"]) == 6 * 5
    with db.session_scope(db_url) as s:
        logs = progress.job_logs(s, jobs.get_job(s, result["id"]))
    note = next(e for e in logs if e.event == "shards_unavailable")
    assert "no deployment 'full-run-shard/full-run-shard'" in note.message
    assert "in this process" in note.message


def test_bad_credentials_fail_the_job_with_the_reason(
    db_url: str, llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.sample_run import sample_run

    llm.api_key = "the-right-key"
    monkeypatch.setenv("EXTRACTFLOW_LLM_API_KEY", "a-wrong-key")
    _project(db_url, 6)
    state = asyncio.run(sample_run(project="trials", n=6, return_state=True))
    assert state.is_failed()
    with db.session_scope(db_url) as s:
        job = s.scalar(select(ProcessingJob))
        assert job is not None and job.status is JobStatus.FAILED
        assert job.error and ("401" in job.error or "key" in job.error.lower())
        assert job.documents_completed == 0
    assert llm.total_requests <= 6  # it stopped instead of failing every document


def _task_run_names(flow_run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[uuid.UUID(flow_run_id)])))
            return sorted(run.name for run in runs)

    return asyncio.run(read())


def test_tuning_knobs_are_flow_parameters_that_override_the_settings(
    db_url: str, llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.full_run import full_run

    monkeypatch.setenv("EXTRACTFLOW_LLM_CONCURRENCY", "8")
    monkeypatch.setenv("EXTRACTFLOW_DOCUMENTS_PER_CHUNK", "50")
    _project(db_url, 7)
    llm.latency = 0.05
    result = asyncio.run(full_run(project="trials", llm_concurrency=2, documents_per_chunk=3,
                                  chunks_in_flight=1))
    assert result["status"] == "COMPLETE" and result["documents_completed"] == 7
    assert llm.max_in_flight <= 2
    extract_runs = [n for n in _task_run_names(result["flow_run_id"])
                    if n.startswith("extract-chunk")]
    assert extract_runs == ["extract-chunk-0", "extract-chunk-1", "extract-chunk-2"]
    bad = asyncio.run(full_run(project="trials", chunks_in_flight=0, return_state=True))
    # the bound is part of the parameter's type: Prefect refuses the run before it starts
    assert bad.is_failed() and "chunks_in_flight" in bad.message
    assert "greater than or equal to 1" in bad.message
