"""The ``collect-batches`` flow: store the answers of provider batches that finished.

A batch-mode run (``full-run`` with ``batch``) submits its requests and ends; this flow,
deployed on a schedule (prefect.yaml, every 10 minutes), takes the next step of every job
still waiting — or of one job — so no worker is held for the hours a provider may take.
"""

from __future__ import annotations

import uuid
from typing import Any

from extraction.errors import ConfigError, ExtractflowError, is_fatal
from flows.entry import entry_flow
from tasks.aggregate import aggregate
from tasks.batch import batch_step, job_dict, waiting_jobs

__all__ = ["collect_batches"]


@entry_flow(llm_stack=True, name="collect-batches", log_prints=False)
async def collect_batches(job_id: str | None = None) -> list[dict[str, Any]]:
    """Collect finished provider batches; finish the jobs whose batches are all in.

    Args:
        job_id: Only this job (id or id prefix); default every job waiting for batches.
    """
    ids = [(await job_dict(job_id))["id"]] if job_id else await waiting_jobs()
    states = []
    for ref in ids:
        job_uuid = uuid.UUID(ref)
        try:
            state = await batch_step(job_uuid)
        except ExtractflowError as exc:
            if isinstance(exc, ConfigError) or is_fatal(exc):  # every later step would fail
                await aggregate(job_uuid, "failed", str(exc))
            states.append({"job_id": ref, "done": False, "error": str(exc)})
            continue
        if state["done"]:
            await aggregate(job_uuid, "complete")
        states.append(state)
    return states
