"""The one ingest loop (extraction/ingest/driver.py) with plain steps: what runs when."""

from __future__ import annotations

import pytest

from extraction.errors import DatabaseError
from extraction.ingest import CHUNKS_IN_FLIGHT, IngestSummary, chunked, drive
from extraction.ingest.summary import ChunkOutcome


def _steps(events: list[str], *, fail_store: int | None = None):  # type: ignore[no-untyped-def]
    def parse(index: int, chunk: list[str]) -> tuple[int, list[str]]:
        events.append(f"parse {index}")
        return index, chunk

    def store(index: int, parsing: tuple[int, list[str]]) -> ChunkOutcome:
        assert parsing[0] == index  # each chunk is stored from its own parse
        if index == fail_store:
            raise DatabaseError("the database went away")
        events.append(f"store {index}")
        return ChunkOutcome(files=len(parsing[1]), ok=len(parsing[1]))

    return parse, store


def test_the_next_chunk_is_parsed_before_this_one_is_stored_and_stores_keep_order() -> None:
    events: list[str] = []
    parse, store = _steps(events)
    summary = IngestSummary(project="p", files_seen=5)
    seen = [totals.files_done for totals in drive(chunked([f"f{i}" for i in range(5)], 2),
                                                  parse=parse, store=store, summary=summary)]
    assert CHUNKS_IN_FLIGHT == 2
    assert events == ["parse 0", "parse 1", "store 0", "parse 2", "store 1", "store 2"]
    assert seen == [2, 4, 5] and summary.ok == 5


def test_a_failing_store_stops_the_loop_and_keeps_what_was_stored() -> None:
    events: list[str] = []
    parse, store = _steps(events, fail_store=1)
    summary = IngestSummary(project="p", files_seen=8)
    with pytest.raises(DatabaseError):
        for _ in drive(chunked([f"f{i}" for i in range(8)], 2), parse=parse, store=store,
                       summary=summary):
            pass
    assert events == ["parse 0", "parse 1", "store 0", "parse 2"]
    assert summary.ok == 2


def test_no_files_parse_and_store_nothing() -> None:
    events: list[str] = []
    parse, store = _steps(events)
    assert list(drive([], parse=parse, store=store, summary=IngestSummary(project="p"))) == []
    assert events == []
