"""Ingest: load files, folders and globs into a project as Document rows — no Prefect here.

The pipeline is discover → parse (in chunks, in worker processes) → store (one transaction
per chunk). Bad files never stop a batch: each becomes a failed or empty document with a
plain-words reason. Content already in the project is skipped as a duplicate. The Prefect
flow ``flows/ingest.py`` and ``extractflow docs add`` run exactly these functions.

Modules, one step each:

* ``discover`` — which files a list of paths/globs names (stable order, hidden files out).
* ``pool`` — parse files in worker processes; a file that crashes a worker is isolated.
* ``store`` — de-duplicate by sha256 and insert rows; the rules for re-ingesting failed
  files are in its docstring.
* ``summary`` — what an ingest did, per chunk and in total, as text, Markdown or JSON.
* ``driver`` — the one loop: parse the next chunk while this one is stored, store in order.
* ``service`` — `ingest_paths`, the whole pipeline without Prefect, and the per-chunk steps.
"""

from extraction.ingest.discover import discover_files, is_glob
from extraction.ingest.driver import CHUNKS_IN_FLIGHT, chunked, drive
from extraction.ingest.pool import ParsePool, default_workers, parse_pool
from extraction.ingest.service import (
    DEFAULT_CHUNK_SIZE,
    POOL_MIN_FILES,
    IngestOptions,
    ProgressCallback,
    ingest_paths,
    is_transient,
    parse_chunk,
    resolve_project,
)
from extraction.ingest.store import (
    Item,
    KnownFile,
    document_row,
    find_known_files,
    store_chunk,
    store_parsed,
)
from extraction.ingest.summary import ChunkOutcome, DuplicateFile, FileProblem, IngestSummary

__all__ = [
    "CHUNKS_IN_FLIGHT",
    "DEFAULT_CHUNK_SIZE",
    "POOL_MIN_FILES",
    "ChunkOutcome",
    "DuplicateFile",
    "FileProblem",
    "IngestOptions",
    "IngestSummary",
    "Item",
    "KnownFile",
    "ParsePool",
    "ProgressCallback",
    "chunked",
    "default_workers",
    "discover_files",
    "document_row",
    "drive",
    "find_known_files",
    "ingest_paths",
    "is_glob",
    "is_transient",
    "parse_chunk",
    "parse_pool",
    "resolve_project",
    "store_chunk",
    "store_parsed",
]
