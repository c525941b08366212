"""A full run split into shards: which documents each shard has, and what the parent does next.

A sharded full run is still one job. Its parent flow plans the job's pending documents into
shards (:func:`plan_shards`, stored as :class:`~extraction.models.JobShard` rows) and starts
each shard as a child flow run that any worker of the pool may take; every shard writes its
cells into the same job, so the unique (job, document, variable) constraint keeps each cell
stored once whoever writes it, and the job's counters add up across shards (they are
incremented in SQL, see :mod:`extraction.run.progress`).

The parent follows the shards with :func:`decide`, a plain function of what the database and
Prefect say about each shard, so the policy is tested without Prefect:

* a shard with no document left is done, whatever its flow run says;
* a shard never started, or whose flow run failed, crashed, or ended with documents left, is
  started (again) — its written cells are kept, so a retry only does what is missing — until
  it has had ``max_attempts``; then the job fails with the shard's reason;
* a running shard whose heartbeat stopped for ``stale_seconds`` is taken for dead (its
  worker was killed: nothing else reports that) and retried the same way;
* a cancelled shard cancels the job.

Planning keeps an existing assignment: a resumed job finds its shards and starts only those
with documents left.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from extraction.errors import ValidationError
from extraction.models import Extraction, JobShard, LogLevel, utcnow
from extraction.run import jobs, progress
from extraction.run.plan import load_plan, pending_documents

__all__ = [
    "Decision",
    "ShardView",
    "decide",
    "plan_shards",
    "record_error",
    "record_start",
    "requested",
    "shard_pending",
    "shard_views",
    "split",
    "touch_shard",
]

#: Prefect state types, as strings (the domain does not import Prefect).
_FINAL_OK = {"COMPLETED"}
_RETRY = {"FAILED", "CRASHED"}
_CANCEL = {"CANCELLED", "CANCELLING"}
_RUNNING = {"RUNNING"}


def split(ids: Sequence[uuid.UUID], *, shards: int | None = None,
          shard_size: int | None = None) -> list[list[uuid.UUID]]:
    """``ids`` in contiguous shards: ``shards`` of nearly equal size, or ``shard_size`` each.

    Fewer documents than shards give fewer (non-empty) shards.

    Raises:
        ValidationError: Both or neither of ``shards`` and ``shard_size``, or one below 1.
    """
    if (shards is None) == (shard_size is None):
        raise ValidationError("give either shards or shard_size", field="shards")
    if shards is not None:
        if shards < 1:
            raise ValidationError(f"shards must be at least 1, got {shards}", field="shards")
        count = min(shards, len(ids))
        if count == 0:
            return []
        base, extra = divmod(len(ids), count)
        out, start = [], 0
        for i in range(count):
            end = start + base + (1 if i < extra else 0)
            out.append(list(ids[start:end]))
            start = end
        return out
    assert shard_size is not None
    if shard_size < 1:
        raise ValidationError(f"shard_size must be at least 1, got {shard_size}",
                              field="shard_size")
    return [list(ids[i:i + shard_size]) for i in range(0, len(ids), shard_size)]


def requested(session: Session, job_id: uuid.UUID, *, shards: int | None = None,
              shard_size: int | None = None) -> tuple[int | None, int | None] | None:
    """How the job is to be sharded, or None for one in-process run.

    Explicit values win, then those stored on the job when it was created (``run full
    --shards N --no-wait``), then an existing assignment (a resumed sharded job: its stored
    shards are kept, so the pair is ``(None, None)``).

    Raises:
        ValidationError: Both values, or one below 1.
    """
    if shards is not None or shard_size is not None:
        split([], shards=shards, shard_size=shard_size)  # checks the pair
        return shards, shard_size
    params = jobs.get_job(session, job_id).parameters or {}
    if params.get("shards") or params.get("shard_size"):
        return params.get("shards"), params.get("shard_size")
    if session.scalar(select(JobShard.id).where(JobShard.job_id == job_id).limit(1)):
        return None, None
    return None


def plan_shards(session: Session, job_id: uuid.UUID, *, shards: int | None = None,
                shard_size: int | None = None) -> list[JobShard]:
    """The job's shards: the stored ones (a resume), else its pending documents split and
    stored now."""
    existing = list(session.scalars(
        select(JobShard).where(JobShard.job_id == job_id).order_by(JobShard.index)))
    if existing:
        # A resumed job: same assignment, and each shard gets its attempts afresh (they are
        # counted per run of the parent; the job log keeps every earlier attempt).
        for row in existing:
            row.attempts = 0
        session.flush()
        return existing
    job = jobs.get_job(session, job_id)
    todo = pending_documents(session, load_plan(session, job))
    rows = [JobShard(job_id=job.id, index=i, document_ids=[str(d) for d in part])
            for i, part in enumerate(split(todo, shards=shards, shard_size=shard_size))]
    session.add_all(rows)
    sizes = [len(r.document_ids) for r in rows]
    progress.log_event(session, job.id, "shards_planned",
                       f"{len(todo)} documents in {len(rows)} shards", details={"sizes": sizes})
    session.flush()
    return rows


def _shard(session: Session, job_id: uuid.UUID, index: int) -> JobShard:
    row = session.scalar(select(JobShard).where(JobShard.job_id == job_id,
                                                JobShard.index == index))
    if row is None:
        raise ValidationError(f"job {job_id} has no shard {index}", field="shard")
    return row


def _done_documents(session: Session, job_id: uuid.UUID) -> set[uuid.UUID]:
    return set(session.scalars(select(Extraction.document_id)
                               .where(Extraction.job_id == job_id).distinct()))


def shard_pending(session: Session, job_id: uuid.UUID, index: int) -> list[uuid.UUID]:
    """The shard's documents the job has not written yet, in the shard's order."""
    wanted = [uuid.UUID(i) for i in _shard(session, job_id, index).document_ids]
    done = _done_documents(session, job_id)
    return [i for i in wanted if i not in done]


def record_start(session: Session, job_id: uuid.UUID, index: int, flow_run_id: str) -> None:
    """A new attempt of the shard was submitted as ``flow_run_id``."""
    row = _shard(session, job_id, index)
    row.attempts += 1
    row.flow_run_id = flow_run_id
    row.heartbeat_at = None
    progress.log_event(session, job_id, "shard_started",
                       f"shard {index} attempt {row.attempts}: flow run {flow_run_id}",
                       details={"shard": index, "flow_run_id": flow_run_id,
                                "attempt": row.attempts})
    session.flush()


def touch_shard(session: Session, job_id: uuid.UUID, index: int) -> None:
    """The shard's heartbeat: its flow run is alive."""
    session.execute(update(JobShard).where(JobShard.job_id == job_id, JobShard.index == index)
                    .values(heartbeat_at=utcnow()).execution_options(
                        synchronize_session=False))


def record_error(session: Session, job_id: uuid.UUID, index: int, error: str) -> None:
    """Why the shard's last attempt did not finish (shown if the job fails for it)."""
    _shard(session, job_id, index).error = error
    progress.log_event(session, job_id, "shard_failed", f"shard {index}: {error}",
                       level=LogLevel.WARNING, details={"shard": index})
    session.flush()


@dataclass(frozen=True)
class ShardView:
    """What the parent knows of one shard at one poll."""

    index: int
    left: int
    attempts: int
    flow_run_id: str | None = None
    heartbeat_at: datetime | None = None
    error: str | None = None
    run_state: str | None = None  # the Prefect state type of its flow run, as a string
    running_since: datetime | None = None  # when the parent first saw that run RUNNING


def shard_views(session: Session, job_id: uuid.UUID,
                run_states: Mapping[str, str] | None = None,
                running_since: Mapping[str, datetime] | None = None) -> list[ShardView]:
    """Every shard of the job with its documents left, and its run's state when known."""
    done = _done_documents(session, job_id)
    states, since = run_states or {}, running_since or {}
    views = []
    for row in session.scalars(select(JobShard).where(JobShard.job_id == job_id)
                               .order_by(JobShard.index)):
        left = sum(1 for i in row.document_ids if uuid.UUID(i) not in done)
        run = row.flow_run_id
        views.append(ShardView(index=row.index, left=left, attempts=row.attempts,
                               flow_run_id=run, heartbeat_at=row.heartbeat_at, error=row.error,
                               run_state=states.get(run) if run else None,
                               running_since=since.get(run) if run else None))
    return views


@dataclass
class Decision:
    """What the parent does after one poll."""

    start: list[int] = field(default_factory=list)  # shards to start (again)
    crashed: list[str] = field(default_factory=list)  # flow runs taken for dead
    failed: str | None = None  # the job fails for this reason
    cancelled: bool = False
    finished: bool = False  # every shard is done


def _aware(moment: datetime) -> datetime:
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def decide(shards: Sequence[ShardView], *, now: datetime, stale_seconds: float,
           max_attempts: int) -> Decision:
    """The next step of a sharded run, from each shard's documents left and run state."""
    decision = Decision()
    stale = timedelta(seconds=stale_seconds)
    busy = False
    for shard in shards:
        if shard.left == 0:
            continue
        state = shard.run_state
        if state in _CANCEL:
            decision.cancelled = True
            continue
        if shard.flow_run_id is None:
            decision.start.append(shard.index)
            continue
        if state in _RUNNING:
            beats = [_aware(t) for t in (shard.heartbeat_at, shard.running_since) if t]
            if not beats or now - max(beats) <= stale:
                busy = True
                continue
            decision.crashed.append(shard.flow_run_id)
        elif state not in _RETRY and state not in _FINAL_OK:
            busy = True  # scheduled, pending, late, paused: a worker will take it
            continue
        if shard.attempts >= max_attempts:
            decision.failed = (f"shard {shard.index} did not finish after {shard.attempts} "
                               f"attempts ({shard.left} documents left)"
                               + (f": {shard.error}" if shard.error else ""))
            continue
        decision.start.append(shard.index)
    decision.finished = not busy and not decision.start and decision.failed is None \
        and not decision.cancelled
    return decision
