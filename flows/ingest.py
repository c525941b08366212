"""The ``ingest`` flow: files, folders and globs → Document rows of a project.

DAG: discover → parse-chunk × N → store-chunk × N, with N = files / ``chunk_size`` (100 files
per chunk: 10,000 files make 201 task runs, not 10,000). The loop is the one of
:mod:`extraction.ingest.driver`, driven with this flow's tasks: while one chunk is stored,
the next is parsed (a task submitted to the flow's task runner); chunks are stored in
discovery order, each in its own transaction. The parsing itself runs in a pool of worker
processes (PyMuPDF cannot parse in parallel threads), shared by the chunks of the run.

Bad files never fail the flow: they become failed or empty documents. The flow fails only
for an unknown project, paths that name no file, or a database that stays unreachable
after the retries.

The Prefect UI shows a progress artifact while the flow runs and a Markdown summary
(``ingest-<project>``) at the end. In-process callers (``extractflow docs add``) can follow
the run chunk by chunk with `watch_progress`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import Any

from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.context import SyncClientContext
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from config.settings import get_settings
from extraction.ingest import (
    CHUNKS_IN_FLIGHT,
    DEFAULT_CHUNK_SIZE,
    ChunkOutcome,
    IngestOptions,
    IngestSummary,
    Item,
    chunked,
    drive,
    parse_pool,
)
from extraction.ingest.shards import merge_summaries
from flows._ingest_shards import SHARD_ARTIFACT, ingest_available, ingest_in_shards
from flows.entry import entry_flow
from tasks.ingest import discover, parse_chunk, store_chunk

__all__ = ["ingest", "artifact_key", "watch_progress"]

_listeners: list[Callable[[IngestSummary], None]] = []
_listeners_lock = threading.Lock()


def artifact_key(project: str) -> str:
    """The key of a project's ingest summary artifact (lowercase letters, digits, dashes)."""
    return "ingest-" + (re.sub(r"[^a-z0-9]+", "-", project.lower()).strip("-") or "project")


@contextmanager
def watch_progress(callback: Callable[[IngestSummary], None]) -> Iterator[None]:
    """Call ``callback`` with the running totals after each stored chunk (in this process).

    Also called once, before the first chunk, with ``files_seen`` set.
    """
    with _listeners_lock:
        _listeners.append(callback)
    try:
        yield
    finally:
        with _listeners_lock:
            _listeners.remove(callback)


def _notify(summary: IngestSummary) -> None:
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(summary)


@entry_flow(name="ingest", flow_run_name="ingest-{project}",
            task_runner=ThreadPoolTaskRunner(max_workers=CHUNKS_IN_FLIGHT), log_prints=False)
async def ingest(
    project: str,
    paths: list[str],
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_file_bytes: int | None = None,
    workers: int | None = None,
    shards: int | None = None,
    shard: int | None = None,
) -> dict[str, Any]:
    """Load files into a project: parse PDF, DOCX, TXT and Markdown, store their text.

    Args:
        project: Project name or id.
        paths: Files, folders (read recursively; hidden files skipped) and glob patterns
            (``**`` crosses folders), as seen by the machine running the flow.
        chunk_size: Files parsed and stored together; one parse and one store task each.
        max_file_bytes: Files larger than this become failed documents without being read.
            Default: EXTRACTFLOW_MAX_FILE_BYTES (50 MB).
        workers: Parse processes. Default: EXTRACTFLOW_PARSE_CONCURRENCY, at most the CPUs.
        shards: Split the files into this many shards, each an ``ingest`` flow run that any
            worker of the deployment's pool takes (one document per content still holds).
            Without a Prefect server and the ``ingest`` deployment, all is ingested here.
        shard: Set by the parent of a sharded ingest on its shards (they report their
            totals back in a table artifact); not for use by hand.

    Returns:
        The summary: files seen, ok, empty, failed (with reasons), duplicates, pages, bytes.

    The flow is async only for Prefect's sake: a sync flow run ends by waiting up to a
    second for its heartbeat thread (Prefect 3.8 sleeps it in 1 s steps), an async one does
    not. The work itself runs in sync tasks (threads) and the parse processes; callers
    outside an event loop use ``asyncio.run(ingest(...))``.
    """
    # One Prefect API client for the sync tasks below, as a sync flow has: without it each
    # task run opens its own (with a new TLS context, ~30 ms of CPU each).
    with SyncClientContext.get_or_create():
        started = time.perf_counter()
        options = IngestOptions.resolve(get_settings(), chunk_size=chunk_size,
                                        max_file_bytes=max_file_bytes, workers=workers)
        found = discover(project, paths)
        summary = IngestSummary(project=found.project_name, files_seen=len(found.files))
        _notify(summary)
        progress = await acreate_progress_artifact(
            0.0, description=f"Ingesting {len(found.files)} files into {found.project_name}")
        if shards is not None and shards > 1 and shard is None:
            given = {"chunk_size": chunk_size, "max_file_bytes": max_file_bytes,
                     "workers": workers}
            sharded = await _in_shards(found, shards, given, started)
            if sharded is not None:
                _notify(sharded)
                return sharded.to_dict()
        chunks = chunked(found.files, options.chunk_size)
        with parse_pool(options.workers_for(len(found.files))) as pool:

            def parse(index: int, chunk: list[str]) -> PrefectFuture[list[Item]]:
                return parse_chunk.submit(found.project_id, chunk, pool=pool,
                                          max_bytes=options.max_file_bytes, index=index)

            def store(index: int, parsing: PrefectFuture[list[Item]]) -> ChunkOutcome:
                # A future as a task parameter: Prefect waits for it and passes its result.
                return store_chunk(found.project_id, parsing,  # type: ignore[arg-type]
                                   max_bytes=options.max_file_bytes, index=index)

            with closing(drive(chunks, parse=parse, store=store, summary=summary)) as stored:
                for totals in stored:
                    if totals.files_seen:
                        await aupdate_progress_artifact(
                            progress, 100.0 * totals.files_done / totals.files_seen)
                    _notify(totals)
        summary.seconds = time.perf_counter() - started
        if shard is not None:  # the parent reads this shard's totals from here
            await acreate_table_artifact([summary.to_dict()], description=SHARD_ARTIFACT)
        await acreate_markdown_artifact(key=artifact_key(summary.project),
                                        markdown=summary.to_markdown(),
                                        description=summary.headline())
        return summary.to_dict()


async def _in_shards(found: Any, shards: int, given: dict[str, Any], started: float
                     ) -> IngestSummary | None:
    """The files ingested in shards on the pool, or None (with a warning) when there is none."""
    from prefect.logging import get_run_logger

    settings = get_settings()
    why_not = await ingest_available(settings)
    if why_not is not None:
        get_run_logger().warning("shards were asked for, but %s: all files are ingested in "
                                 "this flow run", why_not)
        return None
    # Only what the caller gave: a worker's own settings size its parse processes.
    parameters = {k: v for k, v in given.items() if v is not None}
    parts = await ingest_in_shards(found.project_name, found.files, shards, parameters,
                                   settings)
    summary = merge_summaries(found.project_name, len(found.files), parts,
                              seconds=time.perf_counter() - started)
    await acreate_markdown_artifact(key=artifact_key(summary.project),
                                    markdown=summary.to_markdown(),
                                    description=summary.headline())
    return summary
