"""A run's job from the flow's side (extraction/run/lifecycle.py, watch.py), without Prefect,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from config.settings import get_settings
from extraction import db
from extraction.errors import ExtractflowError
from extraction.models import JobKind, JobStatus, LogLevel
from extraction.run import jobs, lifecycle, progress
from extraction.run.plan import snapshot_prompts
from extraction.run.watch import watch_job
from testing.run_factory import add_trial_documents, make_project


@pytest.fixture
def trials(db_url: str) -> str:
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), 5)
    return "trials"


def _start(kind: JobKind = JobKind.FULL, **kwargs: object) -> tuple[uuid.UUID, bool]:
    options: dict[str, object] = {"job_id": None, "force": False, "flow_run_id": None}
    options.update(kwargs)
    return lifecycle.start_job(kind, {"project": "trials"}, settings=get_settings(),
                               **options)  # type: ignore[arg-type]


def test_a_flow_started_without_a_job_creates_and_opens_one(trials: str) -> None:
    flow_run_id = str(uuid.uuid4())
    job_id, resumed = _start(flow_run_id=flow_run_id)
    assert not resumed
    with db.session_scope() as s:
        job = jobs.get_job(s, job_id)
        assert job.status is JobStatus.PROCESSING and job.flow_run_id == flow_run_id
        assert [e.event for e in progress.job_logs(s, job)][-1] == "job_started"
        snapshot_prompts(s, job)  # the prompt task's work
    plan, chunks = lifecycle.load_chunks(job_id, 2)
    assert plan.job_id == job_id and [len(c) for c in chunks] == [2, 2, 1]
    assert lifecycle.job_status(str(job_id)) is JobStatus.PROCESSING
    assert lifecycle.job_status(str(uuid.uuid4())) is None
    assert lifecycle.job_progress(job_id) == 0.0


def test_a_job_of_the_other_kind_is_refused(trials: str) -> None:
    job_id, _ = _start(JobKind.SAMPLE)
    with db.session_scope() as s:
        jobs.touch_job(s, job_id)
    with pytest.raises(ExtractflowError, match="is a SAMPLE job, not FULL"):
        _start(JobKind.FULL, job_id=str(job_id), force=True)


def test_the_hooks_find_the_job_by_run_id_tag_or_parameter(trials: str) -> None:
    recorded, _ = _start(flow_run_id="11111111-1111-1111-1111-111111111111")
    tagged, _ = _start()
    by_parameter, _ = _start()
    with db.session_scope() as s:
        find = lifecycle.job_for_flow_run
        assert find(s, "11111111-1111-1111-1111-111111111111").id == recorded
        assert find(s, str(uuid.uuid4()), tags=["x", f"job:{tagged}"]).id == tagged
        assert find(s, str(uuid.uuid4()), tags=["job:nonsense"],
                    parameters={"job_id": str(by_parameter)}).id == by_parameter
        assert find(s, str(uuid.uuid4()), tags=["job:nonsense"]) is None


def test_a_killed_run_cancels_its_job_and_a_crashed_one_says_how_to_resume(trials: str
                                                                           ) -> None:
    cancelled, _ = _start(flow_run_id="22222222-2222-2222-2222-222222222222")
    crashed, _ = _start()
    lifecycle.cancel_for_flow_run("22222222-2222-2222-2222-222222222222")
    lifecycle.note_crash(str(uuid.uuid4()), "process exited with -9",
                         tags=[f"job:{crashed}"])
    with db.session_scope() as s:
        job = jobs.get_job(s, cancelled)
        assert job.status is JobStatus.CANCELLED and job.error == "flow run cancelled in Prefect"
        other = jobs.get_job(s, crashed)
        assert other.status is JobStatus.PROCESSING  # resumable
        (entry,) = progress.job_logs(s, other, level=LogLevel.ERROR)
        assert "process exited with -9" in entry.message
        assert f"extractflow run resume {crashed}" in entry.message


def test_the_watcher_stops_the_run_on_a_cancelled_job_and_keeps_the_heartbeat(
        trials: str) -> None:
    job_id, _ = _start()
    with db.session_scope() as s:
        job = jobs.get_job(s, job_id)
        job.updated_at = job.updated_at - timedelta(hours=1)
        before = job.updated_at

    async def main() -> dict[str, str]:
        stop, why = asyncio.Event(), {}
        watcher = asyncio.create_task(watch_job(job_id, stop, why, poll_seconds=0.05,
                                                stale_seconds=0.1))
        await asyncio.sleep(0.3)
        assert not stop.is_set()
        with db.session_scope() as s:
            assert jobs.get_job(s, job_id).updated_at > before  # the heartbeat
            jobs.cancel_job(s, jobs.get_job(s, job_id), reason="cancelled by user")
        await asyncio.wait_for(watcher, 5)
        assert stop.is_set()
        return why

    assert asyncio.run(main()) == {"reason": "cancelled by user"}


def test_the_watcher_asks_about_the_flow_run_and_survives_a_failed_poll(trials: str) -> None:
    job_id, _ = _start()
    asked: list[int] = []

    async def flow_run_cancelled() -> bool:
        asked.append(1)
        if len(asked) == 1:
            raise ConnectionError("the Prefect API hiccuped")
        return len(asked) >= 3

    async def main() -> dict[str, str]:
        stop, why = asyncio.Event(), {}
        await asyncio.wait_for(watch_job(job_id, stop, why, poll_seconds=0.02,
                                         stale_seconds=60,
                                         flow_run_cancelled=flow_run_cancelled), 5)
        return why

    assert asyncio.run(main()) == {"reason": "flow run cancelled in Prefect"}
    assert len(asked) == 3
