"""An ingest split into shards: the files each shard gets, and the totals of all of them.

A large folder is parsed on every worker of the pool by splitting its discovered files
into shards, each ingested by its own flow run (``flows/_ingest_shards.py``). Nothing here
needs the shards to agree with each other: the store de-duplicates by content hash, unique
per project, and a store that meets a row another shard has just added retries its chunk
(``extraction.ingest.store.store_chunk``), so one document per content holds across shards.
A shard that is run again (it crashed) finds its stored files known and skips them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from extraction.errors import ValidationError
from extraction.ingest.summary import DuplicateFile, FileProblem, IngestSummary

__all__ = ["merge_summaries", "split_files"]


def split_files(files: Sequence[str], shards: int) -> list[list[str]]:
    """``files`` in ``shards`` contiguous parts of nearly equal size (none empty).

    Raises:
        ValidationError: ``shards`` below 1.
    """
    if shards < 1:
        raise ValidationError(f"shards must be at least 1, got {shards}", field="shards")
    count = min(shards, len(files))
    if count == 0:
        return []
    base, extra = divmod(len(files), count)
    parts, start = [], 0
    for i in range(count):
        end = start + base + (1 if i < extra else 0)
        parts.append(list(files[start:end]))
        start = end
    return parts


def merge_summaries(project: str, files_seen: int, parts: Iterable[Mapping[str, Any]],
                    seconds: float = 0.0) -> IngestSummary:
    """One summary from the shards' ``IngestSummary.to_dict()`` results."""
    total = IngestSummary(project=project, files_seen=files_seen, seconds=seconds)
    for part in parts:
        total.files_done += int(part.get("files_done", 0))
        for name in ("added", "ok", "empty", "failed", "pages", "bytes", "replaced"):
            setattr(total, name, getattr(total, name) + int(part.get(name, 0)))
        total.problems.extend(FileProblem(**p) for p in part.get("problems", []))
        total.duplicates.extend(DuplicateFile(**d) for d in part.get("duplicate_files", []))
    return total
