"""Per-type matching rules: what counts as the gold value, and how cells are classified."""

from __future__ import annotations

import pytest

from extraction.evaluate.matching import MatchRules, Outcome, classify, token_f1, values_match
from extraction.models import VariableType as T

RULES = MatchRules(number_rtol=0.01, number_atol=0.5, text_f1_threshold=0.8)


@pytest.mark.parametrize(("gold", "extracted", "same"), [
    ("2021-03", "2021-03-14", True),  # the gold's precision decides: the month agrees
    ("2021", "2021-11-02", True),
    ("2021-03-14", "2021-03", False),  # the extraction says less than the gold
    ("2021-03-14", "2021-03-15", False),
    ("2021-03", "2021-04-01", False),
    ("2021-03-14", "2021-03-14", True),
])
def test_dates_match_at_the_gold_precision(gold: str, extracted: str, same: bool) -> None:
    assert values_match(T.DATE, gold, extracted, RULES)[0] is same


def test_dates_between_two_runs_use_the_coarser_precision() -> None:
    assert values_match(T.DATE, "2021-03-14", "2021-03", RULES, symmetric=True)[0]
    assert not values_match(T.DATE, "2021-03-14", "2021-04", RULES, symmetric=True)[0]


def test_numbers_use_the_relative_or_absolute_tolerance() -> None:
    assert values_match(T.NUMBER, 1000.0, 1009.0, RULES)[0]  # within 1 %
    assert not values_match(T.NUMBER, 1000.0, 1011.0, RULES)[0]
    assert values_match(T.NUMBER, 2.0, 2.4, RULES)[0]  # within 0.5 absolute
    assert not values_match(T.NUMBER, 2.0, 2.6, RULES)[0]
    strict = MatchRules()
    assert not values_match(T.NUMBER, 120.0, 121.0, strict)[0]
    assert values_match(T.NUMBER, 120.0, 120, strict)[0]


def test_categories_ignore_case_and_multi_select_is_a_set() -> None:
    assert values_match(T.CATEGORY, "Phase 2", "phase 2", RULES)[0]
    assert not values_match(T.CATEGORY, "Phase 2", "Phase 3", RULES)[0]
    assert values_match(T.CATEGORY, ["EU", "US"], ["us", "eu"], RULES)[0]
    assert not values_match(T.CATEGORY, ["EU", "US"], ["EU"], RULES)[0]


def test_booleans_are_exact() -> None:
    assert values_match(T.BOOLEAN, True, True, RULES)[0]
    assert not values_match(T.BOOLEAN, True, False, RULES)[0]


def test_text_is_normalised_and_scored_by_token_f1() -> None:
    same, f1 = values_match(T.TEXT, "Type 2 diabetes.", "type-2   DIABETES", RULES)
    assert same and f1 == 1.0
    # gold 4 tokens, extracted 5, overlap 4: P = 0.8, R = 1 → F1 = 0.888…
    same, f1 = values_match(T.TEXT, "change in HbA1c score", "the change in HbA1c score", RULES)
    assert same and f1 == pytest.approx(2 * 0.8 * 1.0 / 1.8)
    same, f1 = values_match(T.TEXT, "heart failure", "kidney failure", RULES)
    assert not same and f1 == pytest.approx(0.5)
    assert token_f1("", "") == 1.0 and token_f1("a", "") == 0.0


@pytest.mark.parametrize(("gold", "extracted", "failed", "outcome"), [
    (12.0, 12.0, False, Outcome.CORRECT),
    (12.0, 13.0, False, Outcome.WRONG),
    (12.0, None, False, Outcome.OMISSION),
    (12.0, None, True, Outcome.OMISSION),
    (None, 12.0, False, Outcome.HALLUCINATION),
    (None, None, False, Outcome.BOTH_ABSENT),
    (None, None, True, Outcome.FAILED_ABSENT),
])
def test_cells_are_classified_so_errors_are_told_apart(gold, extracted, failed, outcome) -> None:
    assert classify(T.NUMBER, gold, extracted, MatchRules(), failed=failed)[0] is outcome
