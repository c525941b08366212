"""A run killed while it holds the shared LLM slots does not block the next run.

Both ways Prefect runs here: the embedded mode (every command starts its own temporary API
server on a shared ``PREFECT_HOME``) and a real ``prefect server start`` (the session's, from
tests/flows/conftest.py).
The first run holds every slot of the global limit, is SIGKILL'd, and the next run must
reclaim the slots and start its LLM calls within a few seconds; in the embedded mode the
killed command's temporary server must not outlive it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from extraction import db
from extraction.models import JobKind, ProcessingLog
from extraction.run import jobs, views
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared PREFECT_HOME of the embedded mode, for the module: the first test's first
    command migrates Prefect's database there (~14 s on 2 cores), the others reuse it. Each
    test's limit name is its own, so what earlier tests left there does not matter."""
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch, prefect_home: Path) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model="fake-model") as server:
        point_at_fake_llm(monkeypatch, server.base_url, llm_concurrency=4,
                          global_concurrency_limit=4, documents_per_chunk=2,
                          global_concurrency_limit_name=f"xf-{uuid.uuid4().hex[:8]}")
        monkeypatch.setenv("PREFECT_HOME", str(prefect_home))
        monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
        yield server


def _env(api_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PYTHONPATH"] = str(ROOT)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _jobs(db_url: str) -> tuple[str, str]:
    from config.settings import get_settings
    from extraction.run.plan import create_run_job

    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), 12)
        add_trial_documents(s, make_project(s, name="other"), 4, start=100)
    with db.session_scope(db_url) as s:
        return tuple(str(create_run_job(s, get_settings(), kind=JobKind.FULL, project=p).id)
                     for p in ("trials", "other"))  # type: ignore[return-value]


def _exec(job_id: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "extraction", "run", "exec", job_id],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _other_run_calls(llm: FakeLLMServer) -> list[float]:
    """Times of the calls of the second run (its documents are Sponsor100…103)."""
    return [r.time for r in llm.requests
            if r.chat is not None and re.search(r"Sponsor10\d", r.chat.document)]


def _kill_holder_then_run_next(db_url: str, llm: FakeLLMServer, api_url: str | None
                               ) -> dict[str, Any]:
    first, second = _jobs(db_url)
    env = _env(api_url)
    llm.latency = 1.0  # the first run is still busy (holding all 4 slots) when it is killed
    victim = _exec(first, env)
    try:
        _wait_for(lambda: llm.total_requests >= 4, 120, "the first run's calls")
        servers = [p for p in _children(victim.pid) if "uvicorn" in _cmdline(p)]
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    llm.latency = 0.0
    started = time.time()
    runner = _exec(second, env)
    try:
        assert runner.wait(180) == 0, runner.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
    finally:
        if runner.poll() is None:
            runner.kill()
    calls = _other_run_calls(llm)
    with db.session_scope(db_url) as s:
        logs = s.scalars(select(ProcessingLog).where(ProcessingLog.event.in_(
            ["job_started", "llm_slots_returned"]))).all()
        first_job = views.job_to_dict(jobs.get_job(s, first))
        second_job = views.job_to_dict(jobs.get_job(s, second))
        started_at = min(e.created_at for e in logs
                         if e.event == "job_started" and str(e.job_id) == second)
        reclaimed = [e for e in logs if e.event == "llm_slots_returned"
                     and str(e.job_id) == first]
        timeline = [(e.created_at.strftime("%H:%M:%S.%f"), e.event, e.message[:160]) for e in
                    s.scalars(select(ProcessingLog).where(ProcessingLog.job_id == uuid.UUID(
                        second)).order_by(ProcessingLog.created_at))]
    return {"servers": servers, "calls": calls, "started": started, "first": first_job,
            "second": second_job, "started_at": started_at, "reclaimed": reclaimed,
            "timeline": timeline}


def _seconds_to_first_call(outcome: dict[str, Any]) -> float:
    started_at = outcome["started_at"]
    if started_at.tzinfo is None:

        started_at = started_at.replace(tzinfo=UTC)
    seconds = min(outcome["calls"]) - started_at.timestamp()
    print(f"job start -> first LLM call: {seconds:.1f} s", *outcome["timeline"], sep="\n")
    return seconds


def test_killed_embedded_run_frees_its_slots_and_its_server(db_url: str, llm: FakeLLMServer
                                                            ) -> None:
    outcome = _kill_holder_then_run_next(db_url, llm, None)
    assert outcome["servers"], "the killed command had no temporary Prefect server"
    _wait_for(lambda: not any(_alive(p) for p in outcome["servers"]), 15,
              "the killed command's Prefect server to stop")
    assert outcome["second"]["status"] == "COMPLETE"
    assert outcome["first"]["status"] == "PROCESSING"  # killed: resumable, not finished
    assert len(outcome["calls"]) == 4
    assert outcome["reclaimed"], "the dead run's slots were not reclaimed"
    assert "reclaimed by job" in outcome["reclaimed"][0].message
    # Reclaimed before it had to wait; the rest of the gap is the run's normal set-up.
    assert "waiting_for_slots" not in [event for _, event, _ in outcome["timeline"]]
    assert _seconds_to_first_call(outcome) < 15, outcome["timeline"]


def test_killed_run_frees_its_slots_on_a_prefect_server(db_url: str, llm: FakeLLMServer,
                                                         prefect_api: dict[str, str]) -> None:
    # the session's `prefect server start` (tests/flows/conftest.py): the global limit's
    # name is this test's own, so the server's other limits and runs do not matter
    outcome = _kill_holder_then_run_next(db_url, llm, prefect_api["PREFECT_API_URL"])
    assert outcome["second"]["status"] == "COMPLETE"
    assert len(outcome["calls"]) == 4
    assert outcome["reclaimed"], "the dead run's slots were not reclaimed"
    # Reclaimed before it had to wait; the rest of the gap is the run's normal set-up.
    assert "waiting_for_slots" not in [event for _, event, _ in outcome["timeline"]]
    assert _seconds_to_first_call(outcome) < 15, outcome["timeline"]
