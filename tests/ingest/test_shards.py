"""Shards of an ingest (extraction/ingest/shards.py): the split, and the merged totals."""

from __future__ import annotations

import pytest

from extraction.errors import ValidationError
from extraction.ingest.shards import merge_summaries, split_files


def test_files_split_into_nearly_equal_contiguous_shards() -> None:
    files = [f"/d/{i}.txt" for i in range(7)]
    parts = split_files(files, 3)
    assert [len(p) for p in parts] == [3, 2, 2] and [f for p in parts for f in p] == files
    assert split_files(files[:1], 4) == [files[:1]] and split_files([], 2) == []
    with pytest.raises(ValidationError):
        split_files(files, 0)


def test_the_shards_totals_add_up_to_one_summary() -> None:
    one = {"files_done": 3, "ok": 2, "empty": 0, "failed": 1, "added": 3, "pages": 4,
           "bytes": 300, "replaced": 0, "duplicates": 0, "duplicate_files": [],
           "problems": [{"filename": "b.docx", "source_path": "/d/b.docx", "status": "failed",
                         "reason": "not a DOCX"}]}
    two = {"files_done": 2, "ok": 1, "empty": 0, "failed": 0, "added": 1, "pages": 1,
           "bytes": 200, "replaced": 0, "problems": [],
           "duplicate_files": [{"filename": "a2.txt", "source_path": "/d/a2.txt",
                                "duplicate_of": "a.txt"}]}
    total = merge_summaries("trials", 5, [one, two], seconds=1.5).to_dict()
    assert (total["files_seen"], total["files_done"], total["ok"], total["failed"],
            total["duplicates"], total["added"], total["pages"], total["bytes"]) == \
        (5, 5, 3, 1, 1, 4, 5, 500)
    assert total["problems"][0]["filename"] == "b.docx"
    assert total["ok"] + total["empty"] + total["failed"] + total["duplicates"] == 5
