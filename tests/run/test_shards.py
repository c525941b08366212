"""Shards of a full run (extraction/run/shards.py): the split, the stored plan, the policy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from config.settings import get_settings
from extraction import db
from extraction.errors import ValidationError
from extraction.models import Extraction, ExtractionStatus, JobKind, JobShard
from extraction.run import jobs, shards
from extraction.run.plan import create_run_job, load_plan, open_job, snapshot_prompts
from extraction.run.shards import ShardView, decide
from testing.run_factory import add_trial_documents, make_project

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def test_split_into_n_nearly_equal_contiguous_shards_or_m_documents_each() -> None:
    ids = [uuid.uuid4() for _ in range(10)]
    parts = shards.split(ids, shards=4)
    assert [len(p) for p in parts] == [3, 3, 2, 2] and [i for p in parts for i in p] == ids
    assert [len(p) for p in shards.split(ids, shard_size=4)] == [4, 4, 2]
    assert [len(p) for p in shards.split(ids[:2], shards=4)] == [1, 1]  # no empty shard
    assert shards.split([], shards=3) == []


@pytest.mark.parametrize(("kwargs", "field"), [({}, "shards"),
                                               ({"shards": 2, "shard_size": 5}, "shards"),
                                               ({"shards": 0}, "shards"),
                                               ({"shard_size": 0}, "shard_size")])
def test_split_refuses_unclear_or_empty_shards(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        shards.split([uuid.uuid4()], **kwargs)
    assert raised.value.field == field


def _started_job(db_url: str, n: int, **shard_args: int) -> uuid.UUID:
    with db.session_scope(db_url) as s:
        add_trial_documents(s, make_project(s), n)
        job = create_run_job(s, get_settings(), kind=JobKind.FULL, project="trials",
                             **shard_args)
        open_job(s, job.id, stale_after=60)
        snapshot_prompts(s, job)
        return job.id


def test_the_plan_is_stored_once_and_a_shard_lists_only_its_documents_left(
        db_url: str) -> None:
    job_id = _started_job(db_url, 10, shards=3)
    with db.session_scope(db_url) as s:
        assert shards.requested(s, job_id) == (3, None)  # kept on the job when created
        rows = shards.plan_shards(s, job_id, shards=3)
        assert [len(r.document_ids) for r in rows] == [4, 3, 3]
    with db.session_scope(db_url) as s:
        again = shards.plan_shards(s, job_id, shards=5)  # a resume keeps the assignment
        assert [len(r.document_ids) for r in again] == [4, 3, 3]
        assert s.scalar(select(func.count(JobShard.id))) == 3
        plan = load_plan(s, jobs.get_job(s, job_id))
    with db.session_scope(db_url) as s:
        first = uuid.UUID(shards.plan_shards(s, job_id)[1].document_ids[0])
        variable = plan.variables[0]
        s.add(Extraction(job_id=job_id, document_id=first, variable_id=variable.id,
                         prompt_id=plan.prompts[variable.id].id, status=ExtractionStatus.OK,
                         value="x"))
    with db.session_scope(db_url) as s:
        assert len(shards.shard_pending(s, job_id, 1)) == 2
        views = shards.shard_views(s, job_id)
        assert [(v.index, v.left, v.attempts) for v in views] == [(0, 4, 0), (1, 2, 0),
                                                                   (2, 3, 0)]
        shards.record_start(s, job_id, 1, "run-1")
        shards.touch_shard(s, job_id, 1)
    with db.session_scope(db_url) as s:
        view = shards.shard_views(s, job_id, {"run-1": "RUNNING"})[1]
        assert (view.attempts, view.flow_run_id, view.run_state) == (1, "run-1", "RUNNING")
        assert view.heartbeat_at is not None
        with pytest.raises(ValidationError):
            shards.shard_pending(s, job_id, 7)
    with db.session_scope(db_url) as s:  # a resumed parent: the attempts start again
        assert [r.attempts for r in shards.plan_shards(s, job_id)] == [0, 0, 0]


def test_a_job_without_shards_runs_in_one_piece(db_url: str) -> None:
    job_id = _started_job(db_url, 3)
    with db.session_scope(db_url) as s:
        assert shards.requested(s, job_id) is None
        assert shards.requested(s, job_id, shard_size=2) == (None, 2)
        with pytest.raises(ValidationError):
            shards.requested(s, job_id, shards=0)
    with db.session_scope(db_url) as s, pytest.raises(ValidationError):
        create_run_job(s, get_settings(), kind=JobKind.SAMPLE, project="trials", shards=2)


def _view(index: int = 0, left: int = 5, attempts: int = 1, state: str | None = "RUNNING",
          beat: float | None = 1.0, since: float | None = None) -> ShardView:
    return ShardView(index=index, left=left, attempts=attempts,
                     flow_run_id=None if attempts == 0 else f"run-{index}",
                     heartbeat_at=None if beat is None else NOW - timedelta(seconds=beat),
                     running_since=None if since is None else NOW - timedelta(seconds=since),
                     run_state=state, error="boom" if state == "FAILED" else None)


def _decide(*views: ShardView, attempts: int = 3) -> shards.Decision:
    return decide(views, now=NOW, stale_seconds=60, max_attempts=attempts)


def test_shards_not_started_start_and_running_ones_are_waited_for() -> None:
    d = _decide(_view(0, attempts=0, state=None), _view(1))
    assert d.start == [0] and not d.finished and d.failed is None
    assert _decide(_view(0, state="SCHEDULED", beat=None)).finished is False  # a worker will


def test_a_shard_with_nothing_left_is_done_whatever_its_run_says() -> None:
    assert _decide(_view(0, left=0, state="CRASHED"), _view(1, left=0)).finished


def test_failed_crashed_or_short_shards_are_retried_until_their_attempts_are_spent() -> None:
    d = _decide(_view(0, state="FAILED"), _view(1, state="CRASHED"), _view(2, state="COMPLETED"))
    assert d.start == [0, 1, 2] and not d.finished
    spent = _decide(_view(0, state="FAILED", attempts=3), _view(1))
    assert spent.failed is not None and "shard 0" in spent.failed and "boom" in spent.failed


def test_a_running_shard_without_heartbeat_is_taken_for_dead_and_retried() -> None:
    d = _decide(_view(0, beat=61), _view(1, beat=None, since=61))
    assert d.crashed == ["run-0", "run-1"] and d.start == [0, 1]
    # A run seen RUNNING only now has not had the time to beat yet.
    assert _decide(_view(0, beat=300, since=2)).start == []


def test_a_cancelled_shard_cancels_the_job() -> None:
    assert _decide(_view(0, state="CANCELLED"), _view(1)).cancelled
