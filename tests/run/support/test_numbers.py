"""NUMBER: a value the quote writes in any usual form is supported."""

from __future__ import annotations

import pytest

from extraction.run.support import check_support
from tests.run.support import NUMBER, status


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
