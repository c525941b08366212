"""The ingest tasks: discover files, parse a chunk, store a chunk (thin wrappers).

Only transient trouble is retried — the database or the disk hiccuped, a worker process
died. Bad files never raise (they become failed documents), and a wrong project or path is
a user error that no retry fixes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from extraction import ingest as service
from extraction.ingest import ChunkOutcome, Item, ParsePool

__all__ = ["Discovered", "discover", "parse_chunk", "store_chunk"]


def _transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only errors that may pass (see `extraction.ingest.is_transient`)."""
    error = state.data if isinstance(state.data, BaseException) else None
    return service.is_transient(error)


@dataclass(frozen=True)
class Discovered:
    """The project an ingest writes to and the files it will read, in order."""

    project_id: uuid.UUID
    project_name: str
    files: list[str]


@task(name="discover", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5],
      retry_condition_fn=_transient)
def discover(project: str, paths: list[str]) -> Discovered:
    """Find the project and expand files, folders and globs into a stable list of files."""
    project_id, project_name = service.resolve_project(project)
    return Discovered(project_id, project_name, service.discover_files(paths))


@task(name="parse-chunk", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5],
      retry_condition_fn=_transient, task_run_name="parse-chunk-{index}")
def parse_chunk(project_id: uuid.UUID, paths: list[str], *, pool: ParsePool,
                max_bytes: int, index: int = 0) -> list[Item]:
    """Parse one chunk of files in the worker pool, skipping content already stored."""
    return service.parse_chunk(project_id, paths, pool=pool, max_bytes=max_bytes, index=index)


@task(name="store-chunk", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5],
      retry_condition_fn=_transient, task_run_name="store-chunk-{index}")
def store_chunk(project_id: uuid.UUID, items: list[Item], *, max_bytes: int,
                index: int = 0) -> ChunkOutcome:
    """Store one parsed chunk in its own transaction (duplicates skipped)."""
    return service.store_chunk(project_id, items, max_bytes=max_bytes)
