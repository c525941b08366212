"""An ingest over many workers: the parent starts one ``ingest`` flow run per shard of files.

Same mechanism as a sharded full run (:mod:`flows._shards`): each shard is a flow run of the
deployed ``ingest`` flow, started with ``run_deployment(..., timeout=0, as_subflow=True)`` on
its work pool, so any worker parses any shard. A shard hands its totals back as a table
artifact (a worker's return value stays on that worker); the parent merges them
(:func:`extraction.ingest.shards.merge_summaries`). A shard that fails or crashes is run
again, up to ``shard_attempts``: files it stored are known by then and skipped.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from config.settings import Settings
from extraction.errors import ExtractflowError
from extraction.ingest.shards import split_files

__all__ = ["SHARD_ARTIFACT", "ingest_available", "ingest_in_shards"]

#: The description of the table artifact in which an ingest shard reports its totals.
SHARD_ARTIFACT = "extractflow ingest shard totals"
_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


async def ingest_available(settings: Settings) -> str | None:
    """None when the ingest deployment can take shards; else why not."""
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return "no Prefect server is configured (PREFECT_API_URL), so there is no work pool"
    try:
        async with get_client() as client:
            await client.read_deployment_by_name(settings.deployment_ingest)
    except ObjectNotFound:
        return (f"the Prefect server has no deployment '{settings.deployment_ingest}' "
                "(prefect deploy --all)")
    return None


async def _totals(client: Any, flow_run_id: uuid.UUID) -> dict[str, Any] | None:
    artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    for artifact in artifacts:
        if artifact.description == SHARD_ARTIFACT:
            data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
            return data[0] if isinstance(data, list) else data
    return None


async def ingest_in_shards(project: str, files: Sequence[str], shards: int,
                           parameters: dict[str, Any], settings: Settings
                           ) -> list[dict[str, Any]]:
    """Ingest ``files`` in ``shards`` flow runs on the pool; returns each shard's totals.

    Raises:
        ExtractflowError: A shard did not finish within ``settings.shard_attempts``.
    """
    from prefect.deployments import arun_deployment

    parts = split_files(files, shards)
    attempts = [0] * len(parts)
    runs: dict[int, uuid.UUID] = {}
    results: dict[int, dict[str, Any]] = {}
    async with get_client() as client:
        while len(results) < len(parts):
            for index, part in enumerate(parts):
                if index in results or index in runs:
                    continue
                if attempts[index] >= settings.shard_attempts:
                    raise ExtractflowError(f"ingest shard {index} ({len(part)} files) did not "
                                           f"finish after {attempts[index]} attempts")
                attempts[index] += 1
                run = await arun_deployment(
                    settings.deployment_ingest,
                    parameters={**parameters, "project": project, "paths": part,
                                "shard": index},
                    timeout=0, as_subflow=True, tags=["extractflow", f"shard:{index}"],
                    flow_run_name=f"ingest-{project}-shard-{index}")
                runs[index] = run.id
            await asyncio.sleep(settings.shard_poll_seconds)
            for index, run_id in list(runs.items()):
                run = await client.read_flow_run(run_id)
                state = run.state.type.value if run.state else None
                if state not in _FINAL:
                    continue
                del runs[index]
                totals = await _totals(client, run_id) if state == "COMPLETED" else None
                if totals is not None:
                    results[index] = totals
                elif state == "CANCELLED":
                    raise ExtractflowError(f"ingest shard {index} was cancelled")
    return [results[i] for i in range(len(parts))]
