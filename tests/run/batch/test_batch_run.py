"""Batch mode end to end over the fake server (real SDK, real HTTP), SQLite and PostgreSQL.

From the user's side: ``run full --batch`` submits and returns; ``run collect`` stores the
answers; the results are the same as a synchronous run's; a process killed between
submission and collection loses nothing and submits nothing twice; failed lines are
resubmitted once; bad input is reported in the job's log; cancelling cancels the batches.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from extraction import db
from extraction.models import Extraction, LLMBatch, ProcessingLog
from extraction.run import batch as batches
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm
from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[3]
_COMPARED = ("value", "status", "raw_answer", "confidence", "self_confidence", "evidence_quote",
             "evidence_start", "evidence_end", "evidence_page", "grounded", "support",
             "tokens_in", "tokens_out")


@pytest.fixture
def llm(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    from prefect.settings import PREFECT_API_URL

    with FakeLLMServer(model="fake-model") as server:
        point_at_fake_llm(monkeypatch, server.base_url, batch_poll_seconds=0.1,
                          global_concurrency_limit_name=f"xf-{uuid.uuid4().hex[:8]}")
        monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
        yield server


def _project(db_url: str, n: int) -> None:
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), n)


def _cells(db_url: str, job_id: str) -> dict[tuple[str, str], tuple[Any, ...]]:
    with db.session_scope(db_url) as s:
        rows = s.scalars(select(Extraction).where(Extraction.job_id == uuid.UUID(job_id)))
        return {(r.document.filename, r.variable.name): tuple(getattr(r, c) for c in _COMPARED)
                for r in rows}


def _count(db_url: str, job_id: str) -> tuple[int, int]:
    """(cells, distinct document × variable) of the job."""
    with db.session_scope(db_url) as s:
        job = uuid.UUID(job_id)
        cells = s.scalar(select(func.count(Extraction.id)).where(Extraction.job_id == job))
        pairs = s.execute(select(Extraction.document_id, Extraction.variable_id)
                          .where(Extraction.job_id == job).distinct()).all()
        return int(cells or 0), len(pairs)


def _logs(db_url: str, job_id: str, event: str | None = None) -> list[ProcessingLog]:
    with db.session_scope(db_url) as s:
        query = select(ProcessingLog).where(ProcessingLog.job_id == uuid.UUID(job_id))
        if event:
            query = query.where(ProcessingLog.event == event)
        rows = list(s.scalars(query.order_by(ProcessingLog.created_at)))
        s.expunge_all()
        return rows


def _rows(db_url: str, job_id: str) -> list[LLMBatch]:
    with db.session_scope(db_url) as s:
        rows = list(s.scalars(select(LLMBatch).where(LLMBatch.job_id == uuid.UUID(job_id))
                              .order_by(LLMBatch.part)))
        s.expunge_all()
        return rows


def _posts(server: FakeLLMServer, path: str) -> int:
    return sum(1 for r in server.requests if r.method == "POST" and r.path == path)


def _submit(*extra: str) -> dict[str, Any]:
    result = run_cli("run", "full", "trials", "--batch", "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return result.json()


def _wait_for(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def _price_both_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same price for the sync and the batch run's model, cached tokens at the full input
    price: the two runs' costs then differ only by the Batch API's discount, whatever the
    fake's prompt cache served."""
    price = {"input_per_million": 1.0, "output_per_million": 4.0,
             "cached_input_per_million": 1.0, "batch_discount": 0.5}
    monkeypatch.setenv("EXTRACTFLOW_LLM_PRICES",
                       json.dumps({"fake-model": price, "fake-batch": price}))


def test_batch_run_gives_the_results_of_a_synchronous_run(
    db_url: str, llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(db_url, 12)
    _price_both_models(monkeypatch)
    sync = run_cli("run", "full", "trials", "--json")
    assert sync.exit_code == 0, sync.stderr
    sync_job = sync.json()
    chat_calls = _posts(llm, "/v1/chat/completions")
    assert chat_calls == 12
    # A new project version of the same documents would be re-used: use fresh prompts by
    # asking another model name for the batch run (the fake accepts any listed model).
    llm.models = ["fake-model", "fake-batch"]
    monkeypatch.setenv("EXTRACTFLOW_BATCH_MAX_REQUESTS", "5")
    # long enough that the batches are still running when the submitting command returns,
    # on a loaded machine too (0.5 s was not)
    llm.batches.completion_delay = 3.0
    submitted = _submit("--model", "fake-batch")
    assert submitted["status"] == "PROCESSING"
    assert submitted["batches"]["batches"] == 3  # 12 requests, 5 per batch
    assert _posts(llm, "/v1/batches") == 3 and _posts(llm, "/v1/files") == 3
    assert _posts(llm, "/v1/chat/completions") == chat_calls  # nothing synchronous
    collected = run_cli("run", "collect", submitted["id"][:8], "--wait", "--json")
    assert collected.exit_code == 0, collected.stderr
    job = collected.json()
    assert job["status"] == "COMPLETE" and job["documents_completed"] == 12
    assert job["llm_calls"] == 12 and job["tokens_in"] == sync_job["tokens_in"]
    assert job["tokens_out"] == sync_job["tokens_out"]
    assert _cells(db_url, job["id"]) == _cells(db_url, sync_job["id"])
    assert sync_job["cost_usd"] > 0
    assert job["cost_usd"] == pytest.approx(sync_job["cost_usd"] * 0.5, rel=1e-6)
    assert _posts(llm, "/v1/chat/completions") == chat_calls
    rows = _rows(db_url, job["id"])
    assert [r.lines_total for r in rows] == [5, 5, 2]
    assert all(r.collected_at is not None and r.status == "completed" for r in rows)
    assert sum(r.tokens_in for r in rows) == job["tokens_in"]  # for pricing at batch rate
    export = run_cli("job", "results", job["id"], "--variable", "enrollment", "--json").json()
    assert len(export) == 12 and all(r["status"] == "ok" for r in export)


def test_per_variable_batch_run_matches_sync(db_url: str, llm: FakeLLMServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _project(db_url, 3)
    _price_both_models(monkeypatch)
    sync_job = run_cli("run", "full", "trials", "--mode", "per_variable", "--json").json()
    llm.models = ["fake-model", "fake-batch"]
    submitted = _submit("--mode", "per_variable", "--model", "fake-batch")
    job = run_cli("run", "collect", submitted["id"], "--wait", "--json").json()
    assert job["status"] == "COMPLETE" and job["llm_calls"] == 15  # 3 documents × 5 variables
    assert _cells(db_url, job["id"]) == _cells(db_url, sync_job["id"])
    assert sync_job["cost_usd"] > 0
    assert job["cost_usd"] == pytest.approx(sync_job["cost_usd"] * 0.5, rel=1e-6)


@pytest.mark.slow
def test_kill_between_submission_and_collection_loses_nothing(
    db_url: str, llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL

    _project(db_url, 8)
    monkeypatch.setenv("EXTRACTFLOW_BATCH_MAX_REQUESTS", "3")
    llm.batches.paused = True  # nothing finishes while the processes are killed
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

    def job_id() -> str | None:
        with db.session_scope(db_url) as s:
            found = s.scalar(select(LLMBatch.job_id).where(
                LLMBatch.provider_batch_id.is_not(None)).limit(1))
            return str(found) if found else None

    submitter = subprocess.Popen(
        [sys.executable, "-m", "extraction", "run", "full", "trials", "--batch"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # killed as soon as the first batch id is stored (the others may be to come)
        _wait_for(lambda: job_id() is not None, timeout=90)
    finally:
        submitter.send_signal(signal.SIGKILL)
        submitter.wait(10)
    job = job_id()
    assert job is not None
    collector = subprocess.Popen(
        [sys.executable, "-m", "extraction", "run", "collect", job, "--wait"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # it finishes the submission if needed, then polls: nothing is done yet
        _wait_for(lambda: len(llm.batches.batches) == 3, timeout=60)
        time.sleep(1.0)
    finally:
        collector.send_signal(signal.SIGKILL)
        collector.wait(10)
    assert _count(db_url, job) == (0, 0)
    assert _posts(llm, "/v1/batches") == 3  # the collector made only the ones missing
    llm.batches.paused = False
    _wait_for(lambda: all(b.status == "completed" for b in llm.batches.batches.values()), 30)
    result = run_cli("run", "collect", job, "--wait", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["status"] == "COMPLETE"
    assert _posts(llm, "/v1/batches") == 3 and llm.batches.counts["batches_created"] == 3
    assert _count(db_url, job) == (40, 40)  # every cell once
    again = run_cli("run", "collect", job, "--json")
    assert again.json()["status"] == "COMPLETE" and _count(db_url, job) == (40, 40)


def test_a_kill_after_the_batch_was_created_adopts_it(db_url: str, llm: FakeLLMServer) -> None:
    _project(db_url, 4)
    llm.batches.paused = True
    job_id = _submit()["id"]
    (row,) = _rows(db_url, job_id)
    with db.session_scope(db_url) as s:  # as if killed before the batch id was committed
        stored = s.get(LLMBatch, row.id)
        assert stored is not None
        stored.provider_batch_id, stored.status = None, "preparing"
    llm.batches.paused = False
    result = run_cli("run", "collect", job_id, "--wait", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["status"] == "COMPLETE"
    assert _posts(llm, "/v1/batches") == 1 and _posts(llm, "/v1/files") == 1
    assert [e.event for e in _logs(db_url, job_id, "batch_adopted")] == ["batch_adopted"]
    assert _count(db_url, job_id) == (20, 20)


def test_failed_lines_are_resubmitted_once(db_url: str, llm: FakeLLMServer) -> None:
    _project(db_url, 6)
    llm.fail_when("Sponsor2 Labs", "500", times=1)  # its line fails once, then succeeds
    llm.fail_when("Sponsor4 Labs", "503")  # always fails
    job_id = _submit()["id"]
    job = run_cli("run", "collect", job_id, "--wait", "--json").json()
    assert job["status"] == "COMPLETE"
    assert job["documents_completed"] == 5 and job["documents_failed"] == 1
    rows = _rows(db_url, job_id)
    assert [(r.attempt, r.lines_total) for r in rows] == [(1, 6), (2, 2)]
    assert _posts(llm, "/v1/batches") == 2 and _posts(llm, "/v1/chat/completions") == 0
    failed = _logs(db_url, job_id, "extraction_failed")
    assert len(failed) == 1 and "trial0004.txt" in failed[0].message
    assert "HTTP 503" in failed[0].message and "BATCH_SYNC_FALLBACK" in failed[0].message
    assert _logs(db_url, job_id, "batch_lines_resubmitted")
    assert _count(db_url, job_id) == (30, 30)


def test_sync_fallback_answers_what_the_batch_could_not(
    db_url: str, llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(db_url, 4)
    monkeypatch.setenv("EXTRACTFLOW_BATCH_SYNC_FALLBACK", "true")
    llm.batches.fail_share = 1.0  # every batch line fails
    job_id = _submit()["id"]
    job = run_cli("run", "collect", job_id, "--wait", "--json").json()
    assert job["status"] == "COMPLETE" and job["documents_completed"] == 4
    assert _posts(llm, "/v1/batches") == 2  # the first batch and one resubmission
    assert _posts(llm, "/v1/chat/completions") == 4  # then each document synchronously


def test_expired_batch_lines_are_resubmitted(db_url: str, llm: FakeLLMServer) -> None:
    _project(db_url, 5)
    llm.batches.completion_delay = 1.0
    llm.batches.expire_after = 0.3  # the first batch expires part-way
    job_id = _submit()["id"]
    _wait_for(lambda: any(b.status == "expired" for b in llm.batches.batches.values()), 10)
    llm.batches.expire_after = None
    job = run_cli("run", "collect", job_id, "--wait", "--json").json()
    assert job["status"] == "COMPLETE" and job["documents_completed"] == 5
    assert [e.event for e in _logs(db_url, job_id, "batch_expired")] == ["batch_expired"]
    assert _count(db_url, job_id) == (25, 25)


def test_broken_output_lines_are_reported_and_ignored(db_url: str, llm: FakeLLMServer) -> None:
    _project(db_url, 3)
    llm.batches.output_faults = ["unknown_custom_id", "duplicate", "malformed"]
    job_id = _submit()["id"]
    job = run_cli("run", "collect", job_id, "--wait", "--json").json()
    assert job["status"] == "COMPLETE" and job["documents_completed"] == 3
    messages = [e.message for e in _logs(db_url, job_id, "batch_line_ignored")]
    assert len(messages) == 3
    assert any("did not send" in m for m in messages)
    assert any("repeats custom_id" in m for m in messages)
    assert any("not a valid result line" in m for m in messages)
    assert _count(db_url, job_id) == (15, 15)  # the repeated line stored nothing twice


def test_a_batch_the_provider_rejects_is_reported(
    db_url: str, llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(db_url, 3)
    llm.batches.max_requests = 2  # the provider's limit is lower than the setting
    job_id = _submit()["id"]
    job = run_cli("run", "collect", job_id, "--wait", "--json").json()
    rejected = _logs(db_url, job_id, "batch_rejected")
    assert len(rejected) == 2  # the batch and its resubmission
    assert "at most 2 requests" in rejected[0].message
    assert job["status"] == "FAILED" and job["documents_failed"] == 3
    assert _count(db_url, job_id) == (15, 15)  # failed cells, stored once


def test_a_provider_without_batch_endpoints_fails_the_job_clearly(
    db_url: str, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> None:
    with FakeLLMServer(model="fake-model", batch_api=False) as server:
        point_at_fake_llm(monkeypatch, server.base_url)
        _project(db_url, 2)
        result = run_cli("run", "full", "trials", "--batch", "--json")
    job = result.json()
    assert job["status"] == "FAILED"
    assert "has no Batch API" in job["error"] and "/files" in job["error"]
    assert "404" in job["error"]


def test_cancelling_a_batch_job_cancels_its_provider_batches(
    db_url: str, llm: FakeLLMServer
) -> None:
    _project(db_url, 4)
    llm.batches.completion_delay = 30.0
    job_id = _submit()["id"]
    result = run_cli("job", "cancel", job_id, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["provider_batches_cancelled"] == 1
    _wait_for(lambda: all(b.status == "cancelled" for b in llm.batches.batches.values()), 10)
    assert all(r.collected_at is not None for r in _rows(db_url, job_id))
    assert batches.jobs_waiting() == []
    after = run_cli("run", "collect", job_id, "--json").json()
    assert after["status"] == "CANCELLED" and _count(db_url, job_id) == (0, 0)


def test_progress_counts_lines_as_they_complete(db_url: str, llm: FakeLLMServer) -> None:
    _project(db_url, 6)
    llm.batches.completion_delay = 6.0  # a line a second
    job_id = _submit()["id"]
    time.sleep(1.5)
    human = run_cli("run", "collect", job_id)
    assert human.exit_code == 0 and "lines done" in human.stdout
    state = batches.batch_state(job_id)  # as stored by that step
    assert not state.done and 0 < state.lines_done < 6 and state.lines_total == 6
    assert f"{state.lines_done}/6 lines done" in human.stdout
