"""DATE: a value the quote gives at its precision is supported."""

from __future__ import annotations

import pytest

from extraction.run.support import check_support
from tests.run.support import DATE, status


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
