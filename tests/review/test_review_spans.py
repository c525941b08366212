"""Cutting a document into pieces at evidence spans and page starts (pure data)."""

from __future__ import annotations

from extraction.review.spans import clean_text, segment


def _text_of(pieces: list) -> str:
    return "".join(p[0] for p in pieces if isinstance(p, list))


def _marked(pieces: list, key: int) -> str:
    return "".join(p[0] for p in pieces if isinstance(p, list) and len(p) > 1 and key in p[1])


def test_a_span_covers_exactly_its_stored_offsets() -> None:
    text = "Sponsor: Acme Corp. Phase 2."
    start = text.index("Acme")
    cut = segment(text, [(7, start, start + 9)])
    assert _text_of(cut.pieces) == text
    assert _marked(cut.pieces, 7) == "Acme Corp"
    assert cut.drawn == {7}


def test_offsets_count_code_points_so_an_emoji_before_the_quote_shifts_nothing() -> None:
    text = "😀😀 then Acme"
    start = text.index("Acme")
    cut = segment(text, [(0, start, start + 4)])
    assert _marked(cut.pieces, 0) == "Acme"


def test_overlapping_spans_share_the_piece_they_overlap() -> None:
    text = "abcdefghij"
    cut = segment(text, [(1, 2, 6), (2, 4, 8)])
    assert _text_of(cut.pieces) == text
    assert _marked(cut.pieces, 1) == "cdef"
    assert _marked(cut.pieces, 2) == "efgh"
    assert ["ef", [1, 2]] in cut.pieces


def test_spans_that_cannot_be_drawn_are_left_out_and_reported() -> None:
    text = "short text"
    spans = [(1, 5, 500), (2, -3, 2), (3, 6, 6), (4, 8, 3), (5, None, 4), (6, "1", "3"),
             (7, True, 3), (8, 0, 5)]
    cut = segment(text, spans)
    assert cut.drawn == {8}
    assert _text_of(cut.pieces) == text
    assert _marked(cut.pieces, 8) == "short"


def test_page_markers_sit_where_pages_start_and_bad_offsets_are_ignored() -> None:
    text = "page one\fpage two\fpage three"
    second, third = text.index("page two"), text.index("page three")
    cut = segment(text, [(0, second, second + 4)], [0, second, "x", third, third - 1, 999])
    numbers = [p for p in cut.pieces if isinstance(p, int)]
    assert numbers == [2, 4]  # page 3's entry is not an int; page 5 goes backwards; 6 is past
    assert cut.pieces.index(2) < cut.pieces.index(["page", [0]])
    assert _text_of(cut.pieces) == text


def test_empty_text_gives_no_pieces_and_no_span() -> None:
    assert segment("", [(0, 0, 3)], [0]).pieces == []
    assert segment("", [(0, 0, 3)]).drawn == frozenset()


def test_lone_surrogates_become_replacement_characters_of_the_same_length() -> None:
    broken = "caf\udce9 ok"
    cleaned = clean_text(broken)
    assert cleaned == "caf\ufffd ok" and len(cleaned) == len(broken)
    cleaned.encode("utf-8")  # writable as UTF-8 now
    assert clean_text(None) == ""
