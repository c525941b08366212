"""The value–quote check per type: supported, unsupported and not checkable."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from extraction.models import VariableType
from extraction.run.confidence import UNSUPPORTED_FACTOR, combine
from extraction.run.results import VariableInfo
from extraction.run.support import check_support


def var(kind: VariableType, name: str = "x", label: str = "", **kwargs: Any) -> VariableInfo:
    return VariableInfo(uuid.uuid4(), name, label, kind, **kwargs)


NUMBER = var(VariableType.NUMBER, "enrollment", "Participants enrolled", unit="participants")
DATE = var(VariableType.DATE, "start_date", "Start date")
PHASE = var(VariableType.CATEGORY, "phase", "Trial phase",
            categories=("Phase 1", "Phase 1/2", "Phase 2", "Phase 3", "Not applicable"))
SPONSOR = var(VariableType.CATEGORY, "sponsor_type", "Sponsor type",
              categories=("Industry", "Academic", "Government"), allow_other=True)
DESIGNS = var(VariableType.CATEGORY, "designs", "Designs", multi_select=True,
              categories=("cohort", "cross-sectional", "case-control"))
RANDOMIZED = var(VariableType.BOOLEAN, "randomized", "Randomized")
BLINDED = var(VariableType.BOOLEAN, "double_blind", "Double blind")
CONDITION = var(VariableType.TEXT, "condition", "Condition studied")


def status(variable: VariableInfo, value: Any, quote: str | None, **kwargs: Any) -> str:
    return check_support(variable, value, quote, **kwargs).status


# ------------------------------------------------------------------ NUMBER


@pytest.mark.parametrize(("value", "quote"), [
    (356, "A total of 356 participants were enrolled."),
    (1204, "in total 1,204 participants were enrolled"),
    (1200, "1 200 patients took part"),
    (1200, "1\u202f200 patients took part"),  # a thin space, as typeset numbers have
    (1200, "insgesamt 1.200 Patienten"),
    (1234.56, "a budget of 1,234.56 euros"),
    (1234.56, "ein Budget von 1.234,56 Euro"),
    (3.5, "a dose of 3,5 mg"),
    (24, "in total twenty-four participants were enrolled"),
    (1204, "one thousand two hundred and four patients"),
    (18, "Eighteen participants completed the study."),
    (24, "veinticuatro participantes"),
    (1_200_000, "about 1.2 million people"),
    (0.45, "45% of patients responded"),
    (45, "45 percent of patients responded"),
    (15, "between 10 and 20 weeks"),
    (15, "10-20 weeks"),
    (15, "10 to 20 weeks"),
    (-0.5, "a change of -0.5 points"),
    (12.5, "a mean weight loss of 12.46 kg"),
    (26, "at week 26 (HbA1c)"),
])
def test_number_in_any_usual_written_form_is_supported(value: float, quote: str) -> None:
    support = check_support(NUMBER, float(value), quote)
    assert support.status == "supported", support.reason


@pytest.mark.parametrize(("value", "quote", "reason"), [
    (363, "A total of 356 participants were enrolled.", "states 356, not 363"),
    (34, "in total twenty-four participants were enrolled", "not 34"),
    (12, "a mean weight loss of 12.46 kg", "not 12"),  # a whole value does not round 12.46
    (1, "HbA1c fell", "no number"),  # digits inside a word are not a number
    (5, "No numbers here.", "states no number"),
])
def test_number_that_the_quote_does_not_state_is_unsupported(
        value: float, quote: str, reason: str) -> None:
    support = check_support(NUMBER, float(value), quote)
    assert support.status == "unsupported" and reason in support.reason, support.reason


def test_number_not_checkable_without_quote_or_number() -> None:
    assert status(NUMBER, 12.0, None) == "not_checkable"
    assert status(NUMBER, 12.0, "   ") == "not_checkable"
    assert status(NUMBER, "twelve", "twelve weeks") == "not_checkable"
    assert status(NUMBER, None, "12 weeks") == "not_checkable"


# ------------------------------------------------------------------ DATE


@pytest.mark.parametrize(("value", "quote"), [
    ("2021-03", "The first participant was enrolled in March 2021."),
    ("2021-03", "Enrolment started 2021-03 at four sites."),
    ("2021", "The first participant was enrolled in March 2021."),
    ("2024-03-15", "The trial started on 2024-03-15."),
    ("2024-03-15", "The trial started on 15/03/2024."),
    ("2024-03-15", "The trial started on 15 March 2024."),
    ("2021-03", "Der erste Patient wurde im März 2021 aufgenommen."),
    ("2021-03-05", "El estudio comenzó el 5 de marzo de 2021."),
])
def test_date_in_the_quote_at_the_value_precision_is_supported(value: str, quote: str) -> None:
    support = check_support(DATE, value, quote)
    assert support.status == "supported", support.reason


@pytest.mark.parametrize(("value", "quote", "reason"), [
    ("2021-04", "The first participant was enrolled in March 2021.", "not 2021-04"),
    ("2020", "The first participant was enrolled in March 2021.", "not 2020"),
    ("2021-03-15", "The first participant was enrolled in March 2021.", "only the month"),
    ("2021-03", "Participants were randomly assigned in a 1:1 ratio.", "no date"),
    ("2021-03", "No date is given.", "no date"),
])
def test_date_the_quote_does_not_give_is_unsupported(value: str, quote: str, reason: str) -> None:
    support = check_support(DATE, value, quote)
    assert support.status == "unsupported" and reason in support.reason, support.reason


def test_date_not_checkable_when_the_value_is_no_iso_date() -> None:
    assert status(DATE, "sometime", "in March 2021") == "not_checkable"
    assert status(DATE, "2021-03", None) == "not_checkable"


# ------------------------------------------------------------------ CATEGORY


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


# ------------------------------------------------------------------ confidence


def test_unsupported_lowers_the_confidence_by_the_documented_factor() -> None:
    assert combine(0.9, found=True, grounded=True, unsupported=True) == round(
        0.9 * UNSUPPORTED_FACTOR, 4)
    assert combine(0.9, found=True, grounded=False, unsupported=True) == round(
        0.9 * 0.5 * UNSUPPORTED_FACTOR, 4)
    assert combine(0.9, found=True, grounded=True, unsupported=True,
                   unsupported_factor=1.0) == 0.9
    assert combine(0.9, found=False, grounded=None, unsupported=True) == 0.9
