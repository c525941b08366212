"""Watch a running job: stop it when it is cancelled, keep its heartbeat going.

A flow run called in-process is not stopped when Prefect cancels it (only served and worker
runs are killed), and ``extractflow job cancel`` only marks the job row. So while the
extract stage works, :func:`watch_job` polls, every ``poll_seconds``, the job row and — when
the flow gives it a way to ask — the flow run's state, and sets ``stop`` on either cancel:
the runner then starts no new document, and what is done is kept.

The same poll writes the job's heartbeat, at least every quarter of ``stale_seconds``: a
PROCESSING job whose heartbeat is older than that is taken for crashed and may be resumed
by another process, so four chances to write it come before that.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from extraction.run.lifecycle import poll_job

__all__ = ["watch_job"]

logger = logging.getLogger(__name__)


async def watch_job(
    job_id: uuid.UUID,
    stop: asyncio.Event,
    why: dict[str, str],
    *,
    poll_seconds: float,
    stale_seconds: float,
    flow_run_cancelled: Callable[[], Awaitable[bool]] | None = None,
    log: logging.Logger = logger,
) -> None:
    """Set ``stop`` (and ``why["reason"]``) when the job or its flow run is cancelled.

    Returns when ``stop`` is set, by this watcher or by the run itself (cancel the task to
    end it sooner). A failed poll is logged and tried again at the next tick: a database
    hiccup must not stop a run.

    Args:
        job_id: The job to watch.
        stop: Set here on a cancel; the run sets it when it ends.
        why: Gets ``reason``: "cancelled by user" or "flow run cancelled in Prefect".
        poll_seconds: Time between two polls.
        stale_seconds: The job's staleness limit (the heartbeat is written well within it).
        flow_run_cancelled: Asks whether the flow run was cancelled (None: not asked).
        log: Where a failed poll is reported (the flow passes its own logger).
    """
    heartbeat_every = max(poll_seconds, stale_seconds / 4)
    loop = asyncio.get_running_loop()
    last_touch = loop.time()
    while not stop.is_set():
        await asyncio.sleep(poll_seconds)
        touch = loop.time() - last_touch >= heartbeat_every
        try:
            if await asyncio.to_thread(poll_job, job_id, touch=touch):
                why.setdefault("reason", "cancelled by user")
                stop.set()
                break
            if touch:
                last_touch = loop.time()
            if flow_run_cancelled is not None and await flow_run_cancelled():
                why.setdefault("reason", "flow run cancelled in Prefect")
                stop.set()
                break
        except Exception as exc:  # noqa: BLE001 - a failed poll is retried next tick
            log.warning("cancellation check failed: %s", exc)
