"""Who holds the shared LLM slots: claims recorded in the job log, and a liveness check.

A run that takes slots of the Prefect global concurrency limit records a *claim* (an
``llm_slots_taken`` event in its job's log: the Prefect lease id, the number of slots, the
process id, its start time and host) and an ``llm_slots_returned`` event when it gives them
back. Prefect cannot tell that a run died: its lease only lapses after ``lease_duration``,
and lapsed leases are only revoked by a server service that the embedded (ephemeral) server
never runs. The claims let a run that finds the limit full

* say who holds the slots and since when, and
* release at once the lease of a claim whose owner is dead — its process is gone (same host)
  or its job has shown no heartbeat for ``stale_after`` seconds (another host).

The job log is used (not a table of its own) because it is already shared by every worker
of a deployment, and a claim belongs to a job's history anyway.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from extraction.models import JobStatus, LogLevel, ProcessingJob, ProcessingLog, utcnow

__all__ = [
    "RETURNED",
    "TAKEN",
    "Claim",
    "describe_holders",
    "is_dead",
    "open_claims",
    "process_started",
    "record_returned",
    "record_taken",
]

TAKEN = "llm_slots_taken"
RETURNED = "llm_slots_returned"
#: Claims older than this are not looked at: no run holds slots for a week.
_LOOKBACK = timedelta(days=7)


@dataclass(frozen=True)
class Claim:
    """One run's hold on ``slots`` slots of ``limit`` through Prefect lease ``lease_id``."""

    job_id: uuid.UUID
    lease_id: str
    limit: str
    slots: int
    pid: int
    host: str
    started: str | None  # the process's start time, to tell a reused pid apart
    since: datetime
    job_status: JobStatus
    job_seen: datetime | None  # the job's last heartbeat


def process_started(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux ``/proc``), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counts from after the command name, which may contain spaces.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def record_taken(session: Session, job_id: uuid.UUID, *, lease_id: str, limit: str,
                 slots: int) -> None:
    """Record that this process now holds ``slots`` slots for ``job_id``."""
    pid = os.getpid()
    session.add(ProcessingLog(
        job_id=job_id, event=TAKEN, level=LogLevel.INFO,
        message=f"took {slots} slots of the global limit '{limit}'",
        details={"lease_id": lease_id, "limit": limit, "slots": slots, "pid": pid,
                 "host": socket.gethostname(), "started": process_started(pid)},
    ))


def record_returned(session: Session, job_id: uuid.UUID, *, lease_id: str, limit: str,
                    slots: int, by: str | None = None) -> None:
    """Record that the slots of ``lease_id`` are back (given back, or reclaimed ``by`` a run)."""
    message = f"gave back {slots} slots of the global limit '{limit}'" if by is None else \
        f"{slots} slots of the global limit '{limit}' reclaimed by job {by}: this run is gone"
    session.add(ProcessingLog(
        job_id=job_id, event=RETURNED, level=LogLevel.INFO if by is None else LogLevel.WARNING,
        message=message, details={"lease_id": lease_id, "limit": limit, "slots": slots,
                                  "reclaimed_by": by},
    ))


def open_claims(session: Session, limit: str) -> list[Claim]:
    """Claims on ``limit`` that were never returned, oldest first."""
    since = utcnow() - _LOOKBACK
    rows = session.execute(
        select(ProcessingLog, ProcessingJob.status, ProcessingJob.updated_at)
        .join(ProcessingJob, ProcessingJob.id == ProcessingLog.job_id)
        .where(ProcessingLog.event.in_([TAKEN, RETURNED]), ProcessingLog.created_at >= since)
        .order_by(ProcessingLog.created_at)
    ).all()
    taken: dict[str, Claim] = {}
    for entry, status, seen in rows:
        details = entry.details or {}
        if details.get("limit") != limit or not details.get("lease_id"):
            continue
        lease_id = str(details["lease_id"])
        if entry.event == RETURNED:
            taken.pop(lease_id, None)
            continue
        taken[lease_id] = Claim(
            job_id=entry.job_id, lease_id=lease_id, limit=limit,
            slots=int(details.get("slots") or 0), pid=int(details.get("pid") or 0),
            host=str(details.get("host") or ""), started=details.get("started"),
            since=_aware(entry.created_at), job_status=status, job_seen=_aware(seen),
        )
    return list(taken.values())


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite gives naive datetimes (UTC)
        return value.replace(tzinfo=utcnow().tzinfo)
    return value


def _process_alive(pid: int, started: str | None) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    if started is not None:
        now = process_started(pid)
        if now is not None and now != started:  # the pid was reused by another process
            return False
    return True


def is_dead(claim: Claim, *, stale_after: float) -> bool:
    """Whether the run that made ``claim`` is certainly gone (so its slots can be reclaimed).

    On this host the process is checked directly, which is immediate and exact. A claim made
    on another host counts as dead only when its job has shown no heartbeat for
    ``stale_after`` seconds (the same rule that lets ``run resume`` take over a job).
    """
    if claim.host == socket.gethostname():
        return not _process_alive(claim.pid, claim.started)
    seen = claim.job_seen or claim.since
    return utcnow() - seen > timedelta(seconds=stale_after)


def describe_holders(claims: list[Claim], *, in_use: int | None, size: int | None) -> str:
    """A sentence for a waiting run: who holds the slots and since when."""
    parts = [
        f"job {str(c.job_id)[:8]} holds {c.slots} since "
        f"{c.since.astimezone().strftime('%Y-%m-%d %H:%M:%S')} (pid {c.pid} on {c.host})"
        for c in claims
    ]
    known = sum(c.slots for c in claims)
    if in_use is not None and in_use > known:
        parts.append(f"{in_use - known} held by runs that did not record themselves "
                     "(other projects' databases, or older versions)")
    usage = f"{in_use} of {size} slots in use" if in_use is not None and size else \
        "the limit is full"
    return f"{usage}: " + ("; ".join(parts) if parts else "no holder is recorded")
