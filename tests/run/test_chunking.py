"""Splitting long documents into overlapping chunks, and merging answers per variable."""

from __future__ import annotations

import itertools

import pytest

from extraction.run.chunking import ChunkAnswer, estimate_tokens, merge_answers, split_text

PARAGRAPH = ("The trial enrolled participants at twelve sites across three countries. "
             "Each site followed the same protocol and reported monthly.\n\n")
TEXT = PARAGRAPH * 40  # ~5,300 characters


def test_short_text_is_one_chunk() -> None:
    chunks = split_text("short text", max_tokens=100, overlap_tokens=10)
    assert len(chunks) == 1 and chunks[0].start == 0 and chunks[0].text == "short text"


def test_chunks_cover_the_text_within_budget_with_overlap() -> None:
    chunks = split_text(TEXT, max_tokens=300, overlap_tokens=40)
    assert len(chunks) > 3
    assert chunks[0].start == 0 and chunks[-1].end == len(TEXT)
    for chunk in chunks:
        assert chunk.text == TEXT[chunk.start:chunk.end]
        assert estimate_tokens(chunk.text) <= 300
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end, "consecutive chunks must overlap"
        assert before.end - after.start <= 40 * 4
        assert after.start > before.start


def test_chunks_end_at_paragraph_boundaries_when_possible() -> None:
    chunks = split_text(TEXT, max_tokens=300, overlap_tokens=0)
    assert all(c.text.endswith("\n\n") for c in chunks[:-1])
    assert [c.start for c in chunks[1:]] == [c.end for c in chunks[:-1]]


def test_a_fact_shorter_than_the_overlap_is_whole_in_some_chunk() -> None:
    fact = "Enrollment was 1,204 participants."
    text = "word " * 700 + fact + " word" * 700
    chunks = split_text(text, max_tokens=200, overlap_tokens=30)
    assert any(fact in c.text for c in chunks)


def test_text_without_spaces_is_cut_hard_and_overlap_is_capped() -> None:
    text = "x" * 1000
    chunks = split_text(text, max_tokens=50, overlap_tokens=500)
    assert chunks[-1].end == 1000
    assert all(len(c.text) <= 200 for c in chunks)
    assert all(b.start - a.start >= 100 for a, b in itertools.pairwise(chunks))


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_text(TEXT, max_tokens=0)


def found(i, confidence, grounded=True, position=None) -> ChunkAnswer:
    return ChunkAnswer(i, "found", confidence, grounded, position, payload=f"found@{i}")


def test_merge_prefers_grounded_then_confident_then_earliest() -> None:
    assert merge_answers([found(0, 0.95, grounded=False), found(1, 0.6)]).chunk_index == 1
    assert merge_answers([found(0, 0.6), found(1, 0.9)]).chunk_index == 1
    assert merge_answers([found(0, 0.9, position=500), found(1, 0.9, position=100)]) \
        .chunk_index == 1
    assert merge_answers([found(0, 0.9, position=100), found(1, 0.9, position=100)]) \
        .chunk_index == 0


def test_merge_found_beats_not_found_and_failure() -> None:
    answers = [ChunkAnswer(0, "not_found", 0.99), ChunkAnswer(1, "failed"),
               found(2, 0.3, grounded=False)]
    assert merge_answers(answers).payload == "found@2"


def test_merge_not_found_only_when_every_chunk_says_so() -> None:
    merged = merge_answers([ChunkAnswer(0, "not_found", 0.9), ChunkAnswer(1, "not_found", 0.7)])
    assert merged.status == "not_found" and merged.confidence == 0.7  # the weakest claim
    failed = merge_answers([ChunkAnswer(0, "not_found", 0.9), ChunkAnswer(1, "failed")])
    assert failed.status == "failed"
    with pytest.raises(ValueError):
        merge_answers([])
