"""The full-run flow with ``batch=True`` and the collect-batches flow, on Prefect's harness."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from extraction import db
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm


@pytest.fixture
def llm(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model="fake-model") as server:
        point_at_fake_llm(monkeypatch, server.base_url,
                          global_concurrency_limit_name=f"xf-{uuid.uuid4().hex[:8]}")
        yield server


def test_full_run_with_batch_submits_and_the_collect_flow_finishes(
    db_url: str, llm: FakeLLMServer
) -> None:
    from flows.collect_batches import collect_batches
    from flows.full_run import full_run

    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), 5)
    llm.batches.paused = True
    submitted = asyncio.run(full_run(project="trials", batch=True))
    assert submitted["status"] == "PROCESSING"  # the flow run ended; the provider works
    assert submitted["parameters"]["batch"] is True
    assert llm.batches.counts["batches_created"] == 1
    assert llm.path_counts["/v1/chat/completions"] == 0
    states = asyncio.run(collect_batches())
    assert [s["done"] for s in states] == [False]  # still in progress
    llm.batches.paused = False
    while any(b.status != "completed" for b in llm.batches.batches.values()):
        asyncio.run(asyncio.sleep(0.1))
    states = asyncio.run(collect_batches())
    assert [s["done"] for s in states] == [True]
    from tasks.batch import _job_dict

    job = _job_dict(submitted["id"])
    assert job["status"] == "COMPLETE" and job["documents_completed"] == 5
    assert job["summary"]["variables"][0]["fill_rate"] == 1.0
    assert asyncio.run(collect_batches()) == []  # nothing is waiting any more
    assert llm.batches.counts["batches_created"] == 1
