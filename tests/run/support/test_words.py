"""CATEGORY, BOOLEAN and TEXT: the checks that read the quote's words."""

from __future__ import annotations

import pytest

from extraction.run.support import check_support
from tests.run.support import BLINDED, CONDITION, DESIGNS, PHASE, RANDOMIZED, SPONSOR, status


def test_category_named_alone_is_supported() -> None:
    assert status(PHASE, "Phase 2", "This is a phase 2 trial.") == "supported"
    assert status(PHASE, "Phase 1/2", "a Phase 1/2 dose-finding study") == "supported"


def test_category_with_another_named_instead_is_unsupported() -> None:
    support = check_support(PHASE, "Phase 3", "This is a Phase 2 trial.")
    assert support.status == "unsupported"
    assert support.reason == "the quote names 'Phase 2', not 'Phase 3'"
    # "Phase 1" inside "Phase 1/2" is not a mention of Phase 1
    assert status(PHASE, "Phase 1", "a Phase 1/2 dose-finding study") == "unsupported"
    assert status(DESIGNS, ["cohort"], "This cross-sectional survey was conducted once.") \
        == "unsupported"


def test_category_named_with_another_or_inferred_is_not_checkable() -> None:
    assert status(PHASE, "Phase 2", "Phase 2 follows the Phase 1 part.") == "not_checkable"
    inferred = check_support(SPONSOR, "Industry", "funded by Acme Pharma Inc.")
    assert inferred.status == "not_checkable" and "names no category" in inferred.reason
    assert status(SPONSOR, "other", "funded by a charity") == "not_checkable"


def test_category_aliases_count_as_naming_it() -> None:
    aliases = {"Industry": ["Inc.", "pharmaceuticals"], "Academic": ["university"]}
    quote = "The trial is funded by Norvale Pharmaceuticals Inc."
    assert status(SPONSOR, "Industry", quote, aliases=aliases) == "supported"
    assert status(SPONSOR, "Academic", quote, aliases=aliases) == "unsupported"
    assert status(SPONSOR, "Academic", quote) == "not_checkable"  # no aliases, no verdict


def test_multi_select_needs_every_chosen_category() -> None:
    quote = "A cohort study with a nested case-control analysis."
    assert status(DESIGNS, ["cohort", "case-control"], quote) == "supported"
    assert status(DESIGNS, ["cohort"], quote) == "not_checkable"  # names one more


# ------------------------------------------------------------------ BOOLEAN


def test_boolean_affirmed_condition_supports_true_and_not_false() -> None:
    quote = "Participants were randomly assigned in a 1:1 ratio to drug X or placebo."
    assert status(RANDOMIZED, True, quote) == "supported"
    support = check_support(RANDOMIZED, False, quote)
    assert support.status == "unsupported" and "cue-based" in support.reason


@pytest.mark.parametrize("quote", [
    "The trial was not randomised and had no control group.",
    "A non-randomised, open-label design.",
    "Randomisation was not performed.",
    "Patients weren't randomized.",
])
def test_boolean_negated_condition_supports_false_and_not_true(quote: str) -> None:
    assert status(RANDOMIZED, False, quote) == "supported"
    assert status(RANDOMIZED, True, quote) == "unsupported"


def test_boolean_negation_prefix_and_far_negation() -> None:
    assert status(BLINDED, True, "The study was unblinded.") == "unsupported"
    # a "no" far from the condition's words does not negate it
    assert status(RANDOMIZED, True, "Participants were randomly assigned to the drug; there "
                                    "was no interim analysis.") == "supported"


def test_boolean_without_the_condition_words_is_not_checkable() -> None:
    assert status(RANDOMIZED, False, "A single-arm study of drug X.") == "not_checkable"
    assert status(RANDOMIZED, "yes", "randomised") == "not_checkable"


# ------------------------------------------------------------------ TEXT


def test_text_covered_by_the_quote_is_supported() -> None:
    assert status(CONDITION, "type 2 diabetes", "The trial studies type 2 diabetes.") \
        == "supported"
    assert status(CONDITION, "Chronic Migraines", "adults with chronic migraine") == "supported"
    assert status(CONDITION, "études cliniques", "Les Etudes cliniques") == "supported"


def test_text_not_in_the_quote_is_unsupported_with_the_missing_words() -> None:
    support = check_support(CONDITION, "chronic migraine", "The trial studies type 2 diabetes.")
    assert support.status == "unsupported" and "missing: chronic, migraine" in support.reason


def test_text_threshold_is_a_setting() -> None:
    value, quote = "chronic heart failure with reduced", "chronic heart failure"
    assert status(CONDITION, value, quote) == "supported"  # 3 of 5 words = 0.6
    assert status(CONDITION, value, quote, text_coverage=0.9) == "unsupported"
    assert status(CONDITION, "", quote) == "not_checkable"
