"""The ingest pipeline without Prefect: discover → parse a chunk → store it, chunk by chunk.

The Prefect flow (``flows/ingest.py``) calls the same steps as tasks; `ingest_paths` runs
them for scripts, notebooks and ``extractflow docs add --no-flow``. Both drive the one loop
of :mod:`extraction.ingest.driver`; here a helper thread parses the next chunk (feeding the
process pool) while this one stores.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import OperationalError

from config.settings import Settings, get_settings
from extraction import codebook
from extraction.db import session_scope
from extraction.errors import DatabaseError, ValidationError
from extraction.ingest.discover import discover_files
from extraction.ingest.driver import chunked, drive
from extraction.ingest.pool import ParsePool, default_workers, parse_pool
from extraction.ingest.store import Item, find_known_files, store_chunk
from extraction.ingest.summary import ChunkOutcome, IngestSummary

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "POOL_MIN_FILES",
    "IngestOptions",
    "ProgressCallback",
    "ingest_paths",
    "is_transient",
    "parse_chunk",
    "resolve_project",
]

#: Files per chunk: 10,000 files make 100 parse + 100 store task runs in the flow.
DEFAULT_CHUNK_SIZE = 100

#: Fewer files than this are parsed in-process: starting worker processes costs seconds of
#: CPU (the forkserver imports the parsers), more than parsing a small batch takes.
POOL_MIN_FILES = 200

#: Called after each stored chunk with the running totals.
ProgressCallback = Callable[[IngestSummary], None]


@dataclass(frozen=True)
class IngestOptions:
    """How to ingest: chunk size, size limit and parse processes, resolved from settings."""

    chunk_size: int
    max_file_bytes: int
    workers: int

    @classmethod
    def resolve(cls, settings: Settings, *, chunk_size: int | None = None,
                max_file_bytes: int | None = None, workers: int | None = None
                ) -> IngestOptions:
        """Explicit values win; otherwise settings (``max_file_bytes``, ``parse_concurrency``).

        Raises:
            ValidationError: For a chunk size, size limit or worker count below 1.
        """
        for name, value in (("chunk_size", chunk_size), ("max_file_bytes", max_file_bytes),
                            ("workers", workers)):
            if value is not None and value < 1:
                raise ValidationError(f"{name} must be at least 1, got {value}", field=name)
        return cls(
            chunk_size=chunk_size or DEFAULT_CHUNK_SIZE,
            max_file_bytes=max_file_bytes or settings.max_file_bytes,
            workers=workers or default_workers(settings.parse_concurrency),
        )

    def workers_for(self, files: int) -> int:
        """Parse processes for a batch of ``files``: 1 (in-process) for small batches."""
        return self.workers if files >= POOL_MIN_FILES else 1


def resolve_project(project: str | uuid.UUID, url: str | None = None) -> tuple[uuid.UUID, str]:
    """(id, name) of a project given by id or name.

    Raises:
        NotFoundError: If there is no such project.
    """
    with session_scope(url) as session:
        row = codebook.get_project(session, project)
        return row.id, row.name


def parse_chunk(project_id: uuid.UUID, paths: Sequence[str], *, pool: ParsePool,
                max_bytes: int | None, url: str | None = None,
                index: int | None = None) -> list[Item]:
    """Parse one chunk, skipping files whose bytes are already an ok document.

    ``index`` (the chunk's place in the batch) lets chunks parsed at the same time in one
    pool take their turns in order (see `ParsePool.parse`).

    Returns one item per path, in order: a `KnownFile` for content the project has, else
    the `ParsedDocument` (ok, empty or failed — never an exception for a bad file).
    """
    try:
        with session_scope(url) as session:
            known = find_known_files(session, project_id, paths, max_bytes=max_bytes)
    except BaseException:
        if index is not None:
            pool.skip_turn(index)
        raise
    parsed = iter(pool.parse([p for p in paths if p not in known], max_bytes=max_bytes,
                             turn=index))
    return [known[p] if p in known else next(parsed) for p in paths]


def is_transient(exc: BaseException | None) -> bool:
    """Whether retrying a chunk may help: the database or disk hiccuped, a worker died.

    Bad files never raise (they become failed documents), and a wrong project or path is
    a user error that a retry cannot fix.
    """
    if isinstance(exc, DatabaseError):  # unreachable (transient) vs. schema behind (not)
        return isinstance(exc.__cause__, OperationalError)
    return isinstance(exc, (OperationalError, OSError, BrokenProcessPool, TimeoutError))


def ingest_paths(
    project: str | uuid.UUID,
    paths: Sequence[str | Path],
    *,
    chunk_size: int | None = None,
    max_file_bytes: int | None = None,
    workers: int | None = None,
    on_progress: ProgressCallback | None = None,
    settings: Settings | None = None,
) -> IngestSummary:
    """Add files, folders and globs to a project, without Prefect.

    Args:
        project: Project name or id.
        paths: Files, folders (walked recursively) and glob patterns.
        chunk_size: Files parsed and stored together (default 100).
        max_file_bytes: Larger files become failed documents (default: settings).
        workers: Parse processes (default: settings ``parse_concurrency``, at most the CPUs).
        on_progress: Called after each stored chunk with the running totals.
        settings: Settings to use (default: read now).

    Returns:
        The totals; bad files are in ``problems``, never raised.

    Raises:
        NotFoundError: Unknown project, or a path that does not exist / matches nothing.
        ValidationError: Options out of range.
    """
    started = time.perf_counter()
    settings = settings or get_settings()
    options = IngestOptions.resolve(settings, chunk_size=chunk_size,
                                    max_file_bytes=max_file_bytes, workers=workers)
    project_id, project_name = resolve_project(project)
    files = discover_files(paths)
    summary = IngestSummary(project=project_name, files_seen=len(files))
    chunks = chunked(files, options.chunk_size)
    with parse_pool(options.workers_for(len(files))) as pool, ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ingest-parse") as ahead:

        def parse(index: int, chunk: list[str]) -> Future[list[Item]]:
            return ahead.submit(parse_chunk, project_id, chunk, pool=pool,
                                max_bytes=options.max_file_bytes)

        def store(index: int, parsing: Future[list[Item]]) -> ChunkOutcome:
            return store_chunk(project_id, parsing.result(), max_bytes=options.max_file_bytes)

        for totals in drive(chunks, parse=parse, store=store, summary=summary):
            if on_progress is not None:
                on_progress(totals)
    summary.seconds = time.perf_counter() - started
    return summary
