"""The extract stage's scheduler (extraction/run/scheduler.py), without Prefect.

The loop and the lease/engine lifetime with plain stand-ins, then the whole stage with the
real runner and engine over real HTTP against the fake LLM server, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from config.settings import get_settings
from extraction import db
from extraction.errors import FatalRunError
from extraction.llm.limits import ProcessLimiter, SlotLease
from extraction.models import Extraction, JobKind, JobStatus
from extraction.run import jobs, lifecycle
from extraction.run.assembly import RunOptions, build_engine
from extraction.run.plan import RunPlan, snapshot_prompts
from extraction.run.runner import ChunkOutcome, ChunkRunner
from extraction.run.scheduler import run_extract_stage, schedule_chunks
from extraction.run.summary import finalize_job
from testing.fake_llm_server import FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm


def _chunks(n: int, size: int = 2) -> list[list[uuid.UUID]]:
    return [[uuid.uuid4() for _ in range(size)] for _ in range(n)]


# ---------------------------------------------------------------- the loop


def test_chunks_start_in_order_and_never_more_than_in_flight() -> None:
    started: list[int] = []
    running = peak = 0

    async def start(index: int, chunk: list[uuid.UUID]) -> ChunkOutcome:
        nonlocal running, peak
        started.append(index)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01 * (3 - index % 3))  # uneven chunks finish out of order
        running -= 1
        return ChunkOutcome(documents=len(chunk), documents_completed=len(chunk))

    rounds: list[int] = []

    async def after_round() -> None:
        rounds.append(len(started))

    total = asyncio.run(schedule_chunks(_chunks(7), start, in_flight=3,
                                        may_start=lambda: True, after_round=after_round))
    assert started == list(range(7)) and peak == 3
    assert (total.documents, total.documents_completed, total.stopped) == (14, 14, False)
    assert rounds and rounds[-1] == 7


def test_no_chunk_starts_once_told_to_stop_and_the_rest_count_as_stopped() -> None:
    started: list[int] = []
    stop = asyncio.Event()

    async def start(index: int, chunk: list[uuid.UUID]) -> ChunkOutcome:
        started.append(index)
        stop.set()  # a cancel arrives while the first chunks run
        await asyncio.sleep(0)
        return ChunkOutcome(documents=len(chunk))

    total = asyncio.run(schedule_chunks(_chunks(6), start, in_flight=2,
                                        may_start=lambda: not stop.is_set()))
    assert started == [0, 1]  # both were started before the cancel, none after
    assert total.documents == 4 and total.stopped


def test_a_failing_chunk_cancels_the_others_and_raises() -> None:
    cancelled: list[int] = []

    async def start(index: int, chunk: list[uuid.UUID]) -> ChunkOutcome:
        if index == 0:
            await asyncio.sleep(0.01)
            raise FatalRunError("bad credentials")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(index)
            raise
        return ChunkOutcome()

    with pytest.raises(FatalRunError, match="bad credentials"):
        asyncio.run(schedule_chunks(_chunks(4), start, in_flight=3, may_start=lambda: True))
    assert sorted(cancelled) == [1, 2]


# ---------------------------------------------------------------- the lease and the engine


class _Limit:
    """A stand-in for the global limit: records acquisitions; can be made to wait."""

    def __init__(self) -> None:
        self.held = 0
        self.acquired = 0
        self.released = 0
        self.open = asyncio.Event()
        self.open.set()

    @contextlib.asynccontextmanager
    async def acquire(self, slots: int) -> AsyncIterator[None]:
        await self.open.wait()
        self.acquired += 1
        self.held += slots
        try:
            yield
        finally:
            self.held -= slots
            self.released += 1


class _Client:
    closed = False

    async def aclose(self) -> None:
        self.closed = True


def _plan() -> RunPlan:
    return RunPlan(job_id=uuid.uuid4(), project_id=uuid.uuid4(), kind=JobKind.FULL,
                   mode="per_document", model="m", variables=(), prompts={})


def _stage(limit: _Limit, build: Any, chunks: list[list[uuid.UUID]], *,
           run_chunk: Any = None, stop: asyncio.Event | None = None,
           progress: list[str] | None = None) -> Any:
    options = RunOptions(llm_concurrency=4, documents_per_chunk=2, chunks_in_flight=2,
                         stop_after_unreachable=0, progress_flush_seconds=0.1)
    lease = SlotLease(limit.acquire, 4, linger=0.05)

    async def counted(runner: ChunkRunner, lease: SlotLease, chunk: list[uuid.UUID],
                      index: int) -> ChunkOutcome:
        async with lease:
            assert limit.held == 4  # every chunk runs inside the run's slots
            await asyncio.sleep(0.01)
            return ChunkOutcome(documents=len(chunk), documents_completed=len(chunk))

    async def on_progress() -> None:
        if progress is not None:
            progress.append("progress")

    return run_extract_stage(
        _plan(), chunks, options=options, slots=4, lease=lease, build=build,
        session_factory=lambda: None, stop=stop or asyncio.Event(), resumed=False,
        run_chunk=run_chunk or counted, on_progress=on_progress)


def test_one_lease_for_the_whole_stage_asked_for_while_the_engine_is_built() -> None:
    client = _Client()
    built_while_waiting: list[bool] = []
    progress: list[str] = []

    async def main() -> ChunkOutcome:
        limit = _Limit()
        limit.open.clear()  # the global limit grants nothing until the engine is built
        loop = asyncio.get_running_loop()

        def build() -> tuple[Any, Any]:
            assert threading.current_thread() is not threading.main_thread()
            built_while_waiting.append(limit.acquired == 0)
            loop.call_soon_threadsafe(limit.open.set)
            return client, object()

        total = await _stage(limit, build, _chunks(5), progress=progress)
        assert (limit.acquired, limit.released, limit.held) == (1, 1, 0)
        return total

    total = asyncio.run(main())
    assert built_while_waiting == [True]
    assert total.documents_completed == 10 and not total.stopped
    assert client.closed
    assert 2 <= len(progress) <= 6  # once before the first chunk, then per finished round


def test_nothing_to_do_builds_nothing_and_takes_no_slot() -> None:
    def build() -> tuple[Any, Any]:
        raise AssertionError("no engine for an empty run")

    async def main() -> tuple[ChunkOutcome, _Limit]:
        limit = _Limit()
        return await _stage(limit, build, []), limit

    total, limit = asyncio.run(main())
    assert total.documents == 0 and limit.acquired == 0


def test_an_engine_that_cannot_be_built_gives_the_slots_back() -> None:
    from extraction.errors import ConfigError

    def build() -> tuple[Any, Any]:
        raise ConfigError("the LLM base URL 'ftp://x' is not an http(s) URL")

    async def main() -> _Limit:
        limit = _Limit()
        with pytest.raises(ConfigError, match="ftp://x"):
            await _stage(limit, build, _chunks(3))
        return limit

    limit = asyncio.run(main())
    assert limit.held == 0 and limit.acquired == limit.released


def test_a_fatal_chunk_stops_the_stage_releases_the_slots_and_closes_the_client() -> None:
    client = _Client()
    started: list[int] = []

    async def fatal_first(runner: ChunkRunner, lease: SlotLease, chunk: list[uuid.UUID],
                          index: int) -> ChunkOutcome:
        started.append(index)
        async with lease:
            if index == 0:
                raise FatalRunError("HTTP 401 from the LLM server")
            await asyncio.sleep(5)
            return ChunkOutcome()

    async def main() -> _Limit:
        limit = _Limit()
        with pytest.raises(FatalRunError, match="401"):
            await _stage(limit, lambda: (client, object()), _chunks(6), run_chunk=fatal_first)
        return limit

    limit = asyncio.run(main())
    assert started == [0, 1] and limit.held == 0 and client.closed


def test_a_stop_before_the_start_runs_no_chunk() -> None:
    async def main() -> ChunkOutcome:
        stop = asyncio.Event()
        stop.set()
        return await _stage(_Limit(), lambda: (_Client(), object()), _chunks(3), stop=stop)

    total = asyncio.run(main())
    assert total.stopped and total.documents == 0


# ---------------------------------------------------------------- the real stage


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Any:
    with FakeLLMServer(model="fake-model") as server:
        point_at_fake_llm(monkeypatch, server.base_url)
        yield server


def test_the_stage_extracts_every_document_within_its_slots(
        db_url: str, llm: FakeLLMServer) -> None:
    settings = get_settings()
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), 9)
    job_id, resumed = lifecycle.start_job(JobKind.FULL, {"project": "trials"}, job_id=None,
                                          force=False, flow_run_id=None, settings=settings)
    with db.session_scope(db_url) as s:
        snapshot_prompts(s, jobs.get_job(s, job_id))
    options = RunOptions.resolve(settings, llm_concurrency=3, documents_per_chunk=4,
                                 chunks_in_flight=2)
    plan, chunks = lifecycle.load_chunks(job_id, options.documents_per_chunk)
    assert [len(c) for c in chunks] == [4, 4, 1]
    llm.latency = 0.05
    limit = _Limit()

    async def main() -> ChunkOutcome:
        lease = SlotLease(limit.acquire, 3)
        build = functools.partial(build_engine, settings, plan,
                                  ProcessLimiter(options.llm_concurrency))
        return await run_extract_stage(plan, chunks, options=options, slots=3, lease=lease,
                                       build=build, session_factory=db.session_scope,
                                       stop=asyncio.Event(), resumed=resumed)

    total = asyncio.run(main())
    assert (total.documents, total.documents_completed, total.llm_calls) == (9, 9, 9)
    assert limit.acquired == 1 and limit.held == 0
    assert llm.max_in_flight <= 3
    with db.session_scope(db_url) as s:
        rows = s.scalar(select(func.count(Extraction.id)).where(Extraction.job_id == job_id))
        job = finalize_job(s, job_id, "complete")
        assert rows == 9 * 5 and job.status is JobStatus.COMPLETE
