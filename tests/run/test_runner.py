"""The extract stage without Prefect (extraction/run/plan.py, runner.py, run_summary.py):
the real engine over real HTTP against the fake LLM server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from config.settings import get_settings
from extraction import db
from extraction.llm.limits import ProcessLimiter
from extraction.models import (
    Document,
    Extraction,
    ExtractionStatus,
    JobKind,
    JobStatus,
    LogLevel,
    ProcessingJob,
    ProcessingLog,
)
from extraction.run import jobs, progress
from extraction.run.plan import (
    create_run_job,
    load_plan,
    open_job,
    pending_documents,
    select_documents,
    snapshot_prompts,
)
from extraction.run.runner import ChunkOutcome, ChunkRunner, FatalRunError
from extraction.run.summary import finalize_job
from testing.fake_llm_server import ChatRequest, FakeLLMServer
from testing.run_factory import add_trial_documents, make_project, point_at_fake_llm


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(model="fake-model") as server:
        point_at_fake_llm(monkeypatch, server.base_url)
        yield server


def _setup(db_url: str, n_docs: int, **job_options: object) -> uuid.UUID:
    settings = get_settings()
    with db.session_scope(db_url) as s:
        project = make_project(s)
        add_trial_documents(s, project, n_docs)
        job = create_run_job(s, settings, kind=job_options.pop("kind", JobKind.FULL),
                             project="trials", **job_options)  # type: ignore[arg-type]
        return job.id


def _run(db_url: str, job_id: uuid.UUID, *, stop: asyncio.Event | None = None,
         resumed: bool = False, limit: int = 4, chunk: int = 4,
         stop_after_requests: tuple[FakeLLMServer, int] | None = None,
         stop_after_unreachable: int = 0) -> ChunkOutcome:
    from extraction.llm.client import LLMClient
    from extraction.run.extractor import Extractor

    settings = get_settings()
    with db.session_scope(db_url) as s:
        job, _ = open_job(s, job_id, stale_after=0, force=True)
        snapshot_prompts(s, job)
        plan = load_plan(s, job)
        todo = pending_documents(s, plan)

    async def main() -> ChunkOutcome:
        event = stop or asyncio.Event()
        client = LLMClient.from_settings(settings, limiter=ProcessLimiter(limit))
        runner = ChunkRunner(plan, Extractor(client, mode=plan.mode, settings=settings),
                             session_factory=lambda: db.session_scope(db_url),
                             documents_in_flight=limit, batch_documents=chunk,
                             flush_seconds=0.1, stop=event, check_written=resumed,
                             stop_after_unreachable=stop_after_unreachable)

        async def stopper() -> None:
            assert stop_after_requests is not None
            server, count = stop_after_requests
            while server.total_requests < count:
                await asyncio.sleep(0.01)
            event.set()

        helper = asyncio.create_task(stopper()) if stop_after_requests else None
        total = ChunkOutcome()
        for start in range(0, len(todo), chunk):
            total.add(await runner.run_chunk(todo[start:start + chunk]))
        if helper is not None:
            helper.cancel()
        return total

    return asyncio.run(main())


def _job(db_url: str, job_id: uuid.UUID) -> ProcessingJob:
    with db.session_scope(db_url) as s:
        job = s.get(ProcessingJob, job_id)
        assert job is not None
        s.expunge(job)
        return job


def _cells(db_url: str, job_id: uuid.UUID) -> list[Extraction]:
    with db.session_scope(db_url) as s:
        rows = list(s.scalars(select(Extraction).where(Extraction.job_id == job_id)))
        s.expunge_all()
        return rows


def test_sample_is_reproducible_and_respects_given_ids(session) -> None:  # type: ignore[no-untyped-def]
    project = make_project(session)
    docs = add_trial_documents(session, project, 30)
    first = select_documents(session, project, n=10, seed=7)
    assert len(first) == 10 and len(set(first)) == 10
    assert select_documents(session, project, n=10, seed=7) == first
    assert select_documents(session, project, n=10, seed=8) != first
    chosen = select_documents(session, project, document_ids=[str(docs[3].id), str(docs[1].id)])
    assert chosen == [docs[3].id, docs[1].id]
    assert len(select_documents(session, project, filename_glob="trial000*")) == 10


def test_per_document_mode_makes_one_call_per_document_and_stores_values(
    db_url: str, llm: FakeLLMServer
) -> None:
    job_id = _setup(db_url, 6)
    outcome = _run(db_url, job_id)
    assert llm.total_requests == 6 and outcome.llm_calls == 6
    assert outcome.documents_completed == 6 and outcome.cells_written == 30
    cells = _cells(db_url, job_id)
    assert len(cells) == 30 and {c.status for c in cells} == {ExtractionStatus.OK}
    with db.session_scope(db_url) as s:
        plan = load_plan(s, jobs.get_job(s, job_id))
        names = {v.id: v.name for v in plan.variables}
        index = {d.id: int(d.filename[5:9]) for d in s.scalars(select(Document))}
    for cell in cells:
        i = index[cell.document_id]
        expected = {"enrollment": 100 + i, "phase": f"Phase {i % 3 + 1}",
                    "start_date": f"2024-{i % 12 + 1:02d}-15", "randomised": True}
        name = names[cell.variable_id]
        if name in expected:
            assert cell.value == expected[name], (name, cell.value)
        else:
            assert f"Sponsor{i} Labs" in cell.value
        assert cell.confidence is not None and 0 < cell.confidence <= 1
        assert cell.evidence_quote and cell.evidence_start is not None and cell.grounded
        assert cell.prompt_id == plan.prompts[cell.variable_id].id
    job = _job(db_url, job_id)
    assert (job.documents_completed, job.documents_failed, job.llm_calls) == (6, 0, 6)
    assert job.progress == pytest.approx(100.0)
    # the fake reports cached prompt tokens as a provider does: the documents' calls share the
    # system message and the blocks, stored per cell and summed per job
    assert job.tokens_cached > 0 and job.tokens_cached == sum(c.tokens_cached for c in cells)
    assert job.tokens_cached < job.tokens_in


def test_per_variable_mode_sends_each_variable_its_own_prompt(
    db_url: str, llm: FakeLLMServer
) -> None:
    job_id = _setup(db_url, 2, mode="per_variable")
    _run(db_url, job_id)
    assert llm.total_requests == 2 * 5
    with db.session_scope(db_url) as s:
        plan = load_plan(s, jobs.get_job(s, job_id))
    blocks = {p.user_template: p for p in plan.prompts.values()}
    seen: dict[uuid.UUID, int] = {}
    for request in llm.chat_requests:
        present = [block for block in blocks if block in request.user_text]
        assert len(present) == 1, "a per_variable call carries exactly one variable's block"
        prompt = blocks[present[0]]
        assert prompt.system_template.strip() in request.system_text
        seen[prompt.variable_id] = seen.get(prompt.variable_id, 0) + 1
    assert sorted(seen.values()) == [2] * 5
    cells = _cells(db_url, job_id)
    assert {c.prompt_id for c in cells} == {p.id for p in plan.prompts.values()}


def test_one_documents_failure_is_logged_and_the_chunk_goes_on(
    db_url: str, llm: FakeLLMServer
) -> None:
    llm.fail_when("Sponsor3 Labs", "500")
    job_id = _setup(db_url, 6)
    outcome = _run(db_url, job_id)
    assert outcome.documents_failed == 1 and outcome.documents_completed == 5
    failed = [c for c in _cells(db_url, job_id) if c.status is ExtractionStatus.FAILED]
    assert len(failed) == 5 and all(c.error for c in failed)
    with db.session_scope(db_url) as s:
        logs = list(s.scalars(select(ProcessingLog).where(
            ProcessingLog.job_id == job_id, ProcessingLog.level == LogLevel.ERROR)))
        assert len(logs) == 1
        entry = logs[0]
        assert entry.document_id == failed[0].document_id
        assert entry.details["attempts"] >= 2 and "500" in entry.details["error"]
        assert entry.details["filename"] == "trial0003.txt"
        assert sorted(entry.details["variables"]) == sorted(
            ["sponsor", "phase", "enrollment", "start_date", "randomised"])
    job = _job(db_url, job_id)
    assert (job.documents_completed, job.documents_failed) == (5, 1)


def test_unchanged_rerun_reuses_every_cell_without_calling_the_llm(
    db_url: str, llm: FakeLLMServer
) -> None:
    first = _setup(db_url, 5)
    _run(db_url, first)
    with db.session_scope(db_url) as s:
        finalize_job(s, first, "complete")
        second = create_run_job(s, get_settings(), kind=JobKind.FULL, project="trials").id
    llm.reset()
    outcome = _run(db_url, second)
    assert llm.total_requests == 0 and outcome.llm_calls == 0
    assert outcome.cells_reused == 25 and outcome.documents_completed == 5
    originals = {(c.document_id, c.variable_id): c for c in _cells(db_url, first)}
    for cell in _cells(db_url, second):
        source = originals[(cell.document_id, cell.variable_id)]
        assert cell.reused_from_id == source.id and cell.value == source.value
        assert cell.tokens_in == 0
    with db.session_scope(db_url) as s:
        job = finalize_job(s, second, "complete")
        assert job.cells_reused == 25 and job.summary["cells_reused"] == 25
        assert job.status is JobStatus.COMPLETE


def test_a_changed_prompt_is_asked_again_and_the_rest_reused(
    db_url: str, llm: FakeLLMServer
) -> None:
    from extraction import codebook

    first = _setup(db_url, 3, mode="per_variable")
    _run(db_url, first)
    with db.session_scope(db_url) as s:
        codebook.update_variable(s, "trials", "sponsor", {"instructions": "Lead sponsor only."})
        second = create_run_job(s, get_settings(), kind=JobKind.FULL, project="trials",
                                mode="per_variable").id
    llm.reset()
    outcome = _run(db_url, second)
    assert llm.total_requests == 3  # only sponsor, one call per document
    assert outcome.cells_reused == 12


def test_resume_skips_what_the_job_already_wrote(db_url: str, llm: FakeLLMServer) -> None:
    job_id = _setup(db_url, 8)
    _run(db_url, job_id, stop_after_requests=(llm, 3), limit=1, chunk=1)
    written = len(_cells(db_url, job_id)) // 5
    assert 0 < written < 8
    llm.reset()
    _run(db_url, job_id, resumed=True)
    assert llm.total_requests == 8 - written
    with db.session_scope(db_url) as s:
        count = s.scalar(select(func.count(Extraction.id)).where(Extraction.job_id == job_id))
    assert count == 8 * 5  # no duplicates, nothing missing
    job = _job(db_url, job_id)
    assert job.documents_completed == 8 and job.progress == pytest.approx(100.0)


def test_bad_credentials_stop_the_run(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeLLMServer(model="fake-model", api_key="the-right-key") as server:
        point_at_fake_llm(monkeypatch, server.base_url, llm_api_key="a-wrong-key")
        job_id = _setup(db_url, 4)
        with pytest.raises(FatalRunError) as raised:
            _run(db_url, job_id)
        assert server.total_requests <= 4
    assert "401" in raised.value.reason or "auth" in raised.value.reason.lower()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_server_that_is_down_stops_the_run_after_a_few_documents(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    point_at_fake_llm(monkeypatch, f"http://127.0.0.1:{_closed_port()}/v1")
    job_id = _setup(db_url, 12)

    with pytest.raises(FatalRunError) as raised:
        _run(db_url, job_id, limit=1, chunk=4, stop_after_unreachable=3)

    reason = raised.value.reason
    assert "could not be reached for 3 documents in a row" in reason
    assert "Connection refused" in reason and "start the run again" in reason
    cells = _cells(db_url, job_id)
    # The three documents tried (and the one already in flight) are stored as failed, five
    # variables each; the eight others were never tried.
    assert 3 * 5 <= len(cells) <= 4 * 5
    assert all(c.status is ExtractionStatus.FAILED for c in cells)
    assert all(c.attempts == 1 + get_settings().llm_max_retries for c in cells)


def test_documents_answered_in_between_reset_the_unreachable_count(
        db_url: str, llm: FakeLLMServer) -> None:
    seen: list[str] = []

    def second_and_fourth_document(request: ChatRequest) -> bool:
        # Documents are asked one at a time (limit=1), in an order the test does not choose.
        document = request.documents[0]
        if document not in seen:
            seen.append(document)
        return seen.index(document) in (1, 3)

    llm.fail_when(second_and_fourth_document, "disconnect")
    job_id = _setup(db_url, 6)

    outcome = _run(db_url, job_id, limit=1, chunk=6, stop_after_unreachable=2)

    assert (outcome.documents_completed, outcome.documents_failed) == (4, 2)


def test_parse_stage_parses_pending_documents_and_drops_unusable_ones(
    db_url: str, tmp_path: Path
) -> None:
    from extraction.models import Document, ParseStatus
    from extraction.run.plan import parse_job_documents
    from testing.document_factory import make_text
    from testing.run_factory import trial_text

    good = make_text(tmp_path / "pending.txt", trial_text(7))
    with db.session_scope(db_url) as s:
        project = make_project(s)
        add_trial_documents(s, project, 1)
        for name, path in (("pending.txt", good), ("gone.txt", tmp_path / "gone.txt")):
            s.add(Document(project_id=project.id, filename=name, source_path=str(path),
                           parse_status=ParseStatus.PENDING))
        s.flush()
        job = create_run_job(s, get_settings(), kind=JobKind.FULL, project="trials")
        job_id = job.id
        outcome = parse_job_documents(s, job)
    assert (outcome.parsed, outcome.usable, outcome.unusable) == (2, 2, ["gone.txt"])
    with db.session_scope(db_url) as s:
        parsed = s.scalar(select(Document).where(Document.filename == "pending.txt"))
        assert parsed.parse_status is ParseStatus.OK and "Sponsor7 Labs" in parsed.text
        assert parsed.content_hash
        job = jobs.get_job(s, job_id)
        assert len(job.document_ids) == 2 and job.documents_total == 3
        assert job.documents_failed == 1
        warning = progress.job_logs(s, job, level=LogLevel.WARNING)[0]
        assert warning.event == "document_unusable" and "gone.txt" in warning.message
        again = parse_job_documents(s, job)  # a resumed job does not count it twice
        assert again.unusable == [] and job.documents_failed == 1
