"""A sharded full run on a real Prefect server with two process workers and PostgreSQL.

The issue's "done when": 200 documents in 4 shards — both workers take shards, every cell is
stored exactly once (the unique constraint, and a count), the peak of calls in flight at the
fake LLM server stays within the global limit, the job ends COMPLETE with one summary; and
one worker killed mid-shard (with its flow runs) and started again still gives a complete job
with no duplicates: the parent sees the dead shards' heartbeats stop and starts them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from extraction import db
from extraction.models import Extraction, JobShard, ProcessingJob, ProcessingLog
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm
from tests.flows.conftest import PREFECT, ROOT, deploy_all, running_prefect_server, stop_worker
from tests.flows.test_deployment import _api_settings

pytestmark = pytest.mark.slow

LIMIT = 8


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A server of this module's own (not the session's): the killed-worker test measures
    shard take-over under a timeout, and on a loaded machine a server shared with the
    deployment tests once made it miss its deadline."""
    with running_prefect_server(tmp_path_factory.mktemp("shards-prefect")) as env:
        yield deploy_all(env)
DOCUMENTS = 200


class Workers:
    """Process workers of the pool, each the leader of its own process group."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        log = (self.logs / f"worker-{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "extractflow", "--type", "process",
             "--limit", "2", "--name", f"worker-{name}-{uuid.uuid4().hex[:4]}"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            start_new_session=True)

    def owner(self, pid: int | None) -> str | None:
        """The worker that started process ``pid`` (a flow run), by its parent processes."""
        workers = {p.pid: name for name, p in self.procs.items()}
        while pid and pid > 1:
            if pid in workers:
                return workers[pid]
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return None
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        return None

    def kill(self, name: str, flow_run_pids: list[int]) -> None:
        """SIGKILL the worker and the flow runs it started (each in its own session)."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in flow_run_pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        stop_worker(*self.procs.values(), group=True)


@pytest.fixture
def llm(prefect_server: dict[str, str], monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model="fake-model") as server:
        point_at_fake_llm(monkeypatch, server.base_url,
                          global_concurrency_limit=LIMIT, llm_concurrency=2,
                          global_concurrency_limit_name=f"xf-{uuid.uuid4().hex[:8]}",
                          documents_per_chunk=5, job_stale_seconds=10, shard_poll_seconds=0.5,
                          slot_reclaim_seconds=1)
        yield server


def _env(prefect_env: dict[str, str]) -> dict[str, str]:
    return {**prefect_env, **{k: v for k, v in os.environ.items()
                              if k.startswith("EXTRACTFLOW_")},
            "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}


def _flow_runs(env: dict[str, str], ids: list[str]) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[uuid.UUID(i) for i in ids])))
            return {str(r.id): r for r in runs}

    with _api_settings(env):
        return asyncio.run(read())


def _pid(infrastructure_pid: str | None) -> int | None:
    try:
        return int(str(infrastructure_pid).rsplit(":", 1)[-1])
    except ValueError:
        return None


def _shards(db_url: str) -> list[tuple[int, str | None, int]]:
    with db.session_scope(db_url) as s:
        return [(r.index, r.flow_run_id, r.attempts)
                for r in s.scalars(select(JobShard).order_by(JobShard.index))]


def _documents_done(db_url: str) -> int:
    with db.session_scope(db_url) as s:
        return s.scalar(select(func.count(func.distinct(Extraction.document_id)))) or 0


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_sharded_run_on_two_workers_survives_a_killed_worker(
    prefect_server: dict[str, str], llm: FakeLLMServer, db_url: str, tmp_path: Path
) -> None:
    llm.latency = 1.0
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), DOCUMENTS)
    env = _env(prefect_server)
    workers = Workers(env, tmp_path)
    workers.start("a")
    workers.start("b")
    parent = subprocess.Popen(
        [sys.executable, "-m", "extraction", "run", "full", "trials", "--shards", "4",
         "--json"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=(tmp_path / "parent.log").open("wb"))
    try:
        # Wait until the four shards run, then map each to the worker that runs it.
        deadline = time.monotonic() + 180
        pids: dict[int, int | None] = {}
        while time.monotonic() < deadline:
            shards = _shards(db_url)
            runs = _flow_runs(env, [r for _, r, _ in shards if r]) if shards else {}
            pids = {i: _pid(runs[r].infrastructure_pid) for i, r, _ in shards
                    if r in runs and runs[r].state.type.value == "RUNNING"}
            if len(pids) == 4 and all(pids.values()) and _documents_done(db_url) >= 30:
                break
            time.sleep(0.5)
        owners = {i: workers.owner(pid) for i, pid in pids.items()}
        assert set(owners.values()) == {"a", "b"}, owners  # both workers took shards
        done_at_kill = _documents_done(db_url)
        assert done_at_kill < DOCUMENTS - 40, "the run ended before a worker could be killed"
        workers.kill("b", [pid for i, pid in pids.items() if pid and owners[i] == "b"])
        time.sleep(3)
        workers.start("b")
        out, _ = parent.communicate(timeout=300)
    finally:
        if parent.poll() is None:
            parent.kill()
        workers.stop_all()
    assert parent.returncode == 0, (tmp_path / "parent.log").read_text()[-3000:]
    job = json.loads(out[out.index(b"{"):])
    assert job["status"] == "COMPLETE" and job["documents_completed"] == DOCUMENTS
    with db.session_scope(db_url) as s:
        cells = s.scalar(select(func.count(Extraction.id)))
        distinct = s.scalar(select(func.count()).select_from(
            select(Extraction.document_id, Extraction.variable_id).distinct().subquery()))
        finished = s.scalar(select(func.count(ProcessingLog.id))
                            .where(ProcessingLog.event == "job_finished"))
        row = s.scalar(select(ProcessingJob))
        assert row is not None and row.summary["cells"] == DOCUMENTS * 5
    assert cells == distinct == DOCUMENTS * 5  # every cell once
    assert finished == 1  # one summary, written by the parent
    retried = [i for i, _, attempts in _shards(db_url) if attempts > 1]
    assert retried, "the killed worker's shards were not started again"
    assert llm.max_in_flight <= LIMIT


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_an_ingest_in_shards_on_two_workers_stores_each_content_once(
    prefect_server: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    from extraction import codebook
    from extraction.models import Document

    with db.session_scope(db_url) as s:
        codebook.create_project(s, {"name": "corpus"})
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(12):  # a-files in the first shards, their copies (b-files) in the last
        (folder / f"a{i:02}.txt").write_text(f"Trial {i} enrolled {10 + i} patients.")
        (folder / f"b{i:02}.txt").write_text(f"Trial {i} enrolled {10 + i} patients.")
    env = _env(prefect_server)
    workers = Workers(env, tmp_path)
    workers.start("a")
    workers.start("b")
    try:
        added = subprocess.run(
            [sys.executable, "-m", "extraction", "docs", "add", "corpus", str(folder),
             "--shards", "3", "--chunk-size", "4", "--json"],
            env=env, cwd=ROOT, capture_output=True, timeout=300, check=False)
    finally:
        workers.stop_all()
    assert added.returncode == 0, added.stderr.decode()[-3000:]
    summary = json.loads(added.stdout[added.stdout.index(b"{"):])
    assert (summary["files_seen"], summary["files_done"], summary["added"],
            summary["duplicates"]) == (24, 24, 12, 12)
    with db.session_scope(db_url) as s:
        hashes = list(s.scalars(select(Document.content_hash)))
    assert len(hashes) == len(set(hashes)) == 12  # one document per content

    from prefect.client.orchestration import get_client

    async def shard_runs() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(limit=200)
            return [r.state.type.value for r in runs
                    if r.parameters.get("shard") is not None and "paths" in r.parameters]

    with _api_settings(env):
        states = asyncio.run(shard_runs())
    assert states == ["COMPLETED"] * 3
