"""The one ingest loop: chunks of files → parse ahead → store in order.

Both ways to ingest drive it: :func:`extraction.ingest.service.ingest_paths` (no Prefect)
with plain steps, and the Prefect flow ``flows/ingest.py`` with its tasks. Only the steps
differ — how a parse is started and how its result is awaited — so the rules are here once:

* While one chunk is stored, the next one is already being parsed: parsing is the slow
  part, so it rarely waits for the database. At most :data:`CHUNKS_IN_FLIGHT` chunks are
  between "parse started" and "stored", which bounds the parsed texts held in memory.
* Chunks are stored in discovery order, each by its own ``store`` call (one transaction),
  so the first copy of a duplicated file wins and nothing stored is lost if a later chunk
  fails.
* After each stored chunk the running totals are yielded, for a progress bar or artifact.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from extraction.ingest.summary import ChunkOutcome, IngestSummary

__all__ = ["CHUNKS_IN_FLIGHT", "ParseStep", "StoreStep", "chunked", "drive"]

#: Chunks between "parse started" and "stored": one being stored, the next being parsed.
CHUNKS_IN_FLIGHT = 2

Parsing = TypeVar("Parsing")

#: Starts parsing chunk ``index`` and returns at once with a handle on the result (a future).
ParseStep = Callable[[int, list[str]], Parsing]
#: Stores chunk ``index`` from its parse handle (waiting for it) in one transaction.
StoreStep = Callable[[int, Parsing], ChunkOutcome]


def chunked(paths: Sequence[str], size: int) -> list[list[str]]:
    """Split ``paths`` into consecutive chunks of at most ``size``."""
    return [list(paths[i:i + size]) for i in range(0, len(paths), size)]


def drive(
    chunks: Sequence[list[str]],
    *,
    parse: ParseStep[Parsing],
    store: StoreStep[Parsing],
    summary: IngestSummary,
) -> Iterator[IngestSummary]:
    """Parse and store ``chunks``; yields ``summary`` (updated) after each stored chunk.

    Args:
        chunks: The files, in discovery order, cut into chunks (:func:`chunked`).
        parse: Starts parsing a chunk (in a thread, a task runner…) and returns its handle.
        store: Stores a chunk from its handle; raising stops the ingest (the chunks stored
            before are kept).
        summary: The totals to add each chunk's outcome to.
    """
    in_flight: deque[tuple[int, Parsing]] = deque()
    for index, chunk in enumerate(chunks):
        in_flight.append((index, parse(index, chunk)))
        if len(in_flight) >= CHUNKS_IN_FLIGHT:
            yield _store_oldest(in_flight, store, summary)
    while in_flight:
        yield _store_oldest(in_flight, store, summary)


def _store_oldest(in_flight: deque[tuple[int, Parsing]], store: StoreStep[Parsing],
                  summary: IngestSummary) -> IngestSummary:
    index, parsing = in_flight.popleft()  # its texts can go as soon as they are stored
    summary.add(store(index, parsing))
    return summary
