"""Grounding evidence quotes: offsets into the full text, tolerant matching, pages."""

from __future__ import annotations

import pytest

from extraction.documents import PAGE_SEPARATOR
from extraction.run.grounding import ground, normalize_for_search, page_of

PAGES = [
    "CARDIO-7 trial report.\nSponsored by Acme Pharma.",
    "Methods. In total 1,204 participants were\nenrolled between March 2021 and May 2022.",
    "Results. The primary outcome, “time to first event”, improved.",
]
TEXT = PAGE_SEPARATOR.join(PAGES)
OFFSETS = tuple(sum(len(p) + len(PAGE_SEPARATOR) for p in PAGES[:i]) for i in range(len(PAGES)))


def test_exact_quote_gives_offsets_and_page() -> None:
    quote = "Sponsored by Acme Pharma."
    g = ground(quote, TEXT, OFFSETS)
    assert g.grounded and g.method == "exact" and g.page == 1
    assert TEXT[g.start:g.end] == quote


def test_offsets_are_into_the_full_text_on_later_pages() -> None:
    g = ground("improved", TEXT, OFFSETS)
    assert g.page == 3 and TEXT[g.start:g.end] == "improved"
    assert g.start > OFFSETS[2]


@pytest.mark.parametrize("quote", [
    "in total 1,204 participants were enrolled",  # case and a line break
    "In total  1,204   participants were\n\n enrolled",  # whitespace runs
    'The primary outcome, "time to first event", improved.',  # straight vs curly quotes
    "Methods.\tIn Total 1,204",
])
def test_tolerant_match_maps_back_to_the_original_span(quote) -> None:
    g = ground(quote, TEXT, OFFSETS)
    assert g.grounded and g.method == "normalized"
    found = TEXT[g.start:g.end]
    assert normalize_for_search(found)[0] == normalize_for_search(quote)[0]
    assert g.page == (2 if "1,204" in quote else 3)


def test_quote_with_an_ellipsis_spans_its_fragments_in_order() -> None:
    g = ground("In total 1,204 participants … May 2022", TEXT, OFFSETS)
    assert g.grounded and g.method == "fragments"
    assert TEXT[g.start:g.end].startswith("In total") and TEXT[g.start:g.end].endswith("May 2022")
    assert not ground("May 2022 ... In total 1,204", TEXT, OFFSETS).grounded  # wrong order


@pytest.mark.parametrize("quote", ["Sponsored by Globex Corp.", "", "   ", None])
def test_quote_not_in_the_document_is_not_grounded(quote) -> None:
    g = ground(quote, TEXT, OFFSETS)
    assert not g.grounded and g.start is None and g.page is None and g.method == "none"


def test_window_prefers_the_occurrence_the_model_read() -> None:
    text = "Phase 2 was planned. " + "x" * 100 + " It became Phase 2 in the end."
    first = ground("Phase 2", text)
    later = ground("Phase 2", text, window=(50, len(text)))
    assert first.start == 0 and later.start == text.rindex("Phase 2")
    tolerant = ground("PHASE 2", text, window=(50, len(text)))
    assert tolerant.start == text.rindex("Phase 2")


def test_ligatures_and_soft_hyphens_are_tolerated() -> None:
    text = "The ﬁnal analy\u00adsis was signiﬁcant."
    g = ground("final analysis was significant", text)
    assert g.grounded and text[g.start:g.end] == "ﬁnal analy\u00adsis was signiﬁcant"


def test_page_of_follows_the_page_map() -> None:
    assert [page_of(OFFSETS, o) for o in (0, OFFSETS[1] - 1, OFFSETS[1], OFFSETS[2] + 5)] == \
        [1, 1, 2, 3]
    assert page_of((), 10) == 1
