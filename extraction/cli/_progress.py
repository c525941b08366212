"""Follow a job from the database with a rich progress bar (``run`` and ``job watch``).

The bar reads the job row every half second, so it works the same whether the run is in
this process, in a detached one, or on a Prefect worker on another machine.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from extraction.cli._common import console, err_console
from extraction.db import session_scope
from extraction.models import JobStatus
from extraction.run import jobs, views

__all__ = ["TERMINAL_NAMES", "describe_outcome", "follow_job", "read_job"]

TERMINAL_NAMES = {s.value for s in jobs.TERMINAL}


def read_job(job_id: uuid.UUID | str) -> dict[str, Any]:
    """The job as a dict, read fresh."""
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        data = views.job_to_dict(job, project_name=job.project.name)
        data["stale"] = job.status is JobStatus.PROCESSING and jobs.is_stale(
            job, after_seconds=_stale_after())
        return data


def _stale_after() -> float:
    from config.settings import get_settings

    return get_settings().job_stale_seconds


def follow_job(
    job_id: uuid.UUID | str,
    *,
    alive: Callable[[], bool] | None = None,
    show: bool = True,
    interval: float = 0.5,
) -> dict[str, Any]:
    """Wait until the job ends (or ``alive()`` turns False); draws a bar when ``show``.

    Returns the last job state read. Stops early when the job is PROCESSING with no
    heartbeat (a crashed run) and nothing local is running it.
    """
    data = read_job(job_id)
    label = f"{data['kind'].lower()} {data['id'][:8]}"
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} docs"),
        TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(),
        console=err_console if not console.is_terminal else console, disable=not show,
        transient=False,
    )
    told_waiting = False
    with progress:
        bar = progress.add_task(label, total=max(1, data["documents_total"]), failed=0)
        while True:
            if show and not told_waiting and data["status"] == JobStatus.PROCESSING.value \
                    and not data["llm_calls"]:
                notice = _waiting_notice(data["id"])
                if notice:
                    told_waiting = True
                    progress.console.print(notice, markup=False, highlight=False)
            done = data["documents_completed"] + data["documents_failed"]
            progress.update(bar, completed=done, total=max(1, data["documents_total"]),
                            failed=data["documents_failed"],
                            description=f"{label} {data['status'].lower()}")
            if data["status"] in TERMINAL_NAMES:
                break
            if alive is not None and not alive():
                break
            if alive is None and data.get("stale"):
                break
            time.sleep(interval)
            data = read_job(job_id)
    return data


def _waiting_notice(job_id: str) -> str | None:
    """The run's "waiting for slots" line (who holds them, since when), once it is logged."""
    from sqlalchemy import select

    from extraction.models import ProcessingLog

    with session_scope() as session:
        return session.scalar(
            select(ProcessingLog.message).where(
                ProcessingLog.job_id == uuid.UUID(job_id),
                ProcessingLog.event == "waiting_for_slots").limit(1))


def describe_outcome(data: dict[str, Any]) -> str:
    """One line a person reads after a run: id, status, counts, calls, re-use."""
    line = (
        f"Job {data['id']} ({data['kind']}) {data['status']}: "
        f"{data['documents_completed']} of {data['documents_total']} documents done, "
        f"{data['documents_failed']} failed; {data['llm_calls']} LLM calls, "
        f"{data['cells_reused']} cells re-used"
    )
    if data.get("llm_calls"):
        line += (f", cost ${data['cost_usd']:.4f}" if data.get("cost_usd") is not None
                 else ", cost unknown (no price for the model)")
    if data.get("error") and data["status"] != JobStatus.COMPLETE.value:
        line += f" — {data['error']}"
    return line
