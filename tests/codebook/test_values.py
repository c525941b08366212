"""Normalising LLM answers into the codebook's types: what is read, what is refused."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from extraction.codebook import values
from extraction.models import VariableType
from extraction.run.results import VariableInfo


@pytest.mark.parametrize(("raw", "expected"), [
    (1234, 1234.0),
    (12.5, 12.5),
    ("1,234", 1234.0),
    ("12,500", 12500.0),
    ("1,234,567", 1234567.0),
    ("1 234", 1234.0),
    ("3,5", 3.5),
    ("1.234,5", 1234.5),
    ("1,234.5", 1234.5),
    ("1.234.567", 1234567.0),
    ("-5", -5.0),
    ("−7", -7.0),
    ("45%", 45.0),
    ("120 participants", 120.0),
    ("n = 120", 120.0),
    ("about 300", 300.0),
    ("over 300", 300.0),
    ("1.2 million", 1_200_000.0),
    ("twelve", 12.0),
    ("Twenty-five", 25.0),
    ("one hundred and five", 105.0),
    ("a dozen", 12.0),
    ("two thousand", 2000.0),
    ("10–20", 15.0),
    ("10-20", 15.0),
    ("between 10 and 20", 15.0),
    ("from 100 to 200", 150.0),
    (None, None),
    ("", None),
    ("N/A", None),
    ("not reported", None),
])
def test_numbers(raw, expected) -> None:
    assert values.normalize_number(raw) == expected


@pytest.mark.parametrize("raw", ["many", "120 (60 per arm)", True, [1, 2], float("nan"),
                                 "1,23,4,5"])
def test_numbers_refused(raw) -> None:
    with pytest.raises(ValueError):
        values.normalize_number(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ("2021", "2021"),
    ("2021-03", "2021-03"),
    ("2021-3", "2021-03"),
    ("2021-03-14", "2021-03-14"),
    ("2021-03-14T10:30:00Z", "2021-03-14"),
    ("2021-03-14 10:30", "2021-03-14"),
    ("2021/03/14", "2021-03-14"),
    ("14.03.2021", "2021-03-14"),
    ("13/04/2021", "2021-04-13"),  # day > 12: day first
    ("04/13/2021", "2021-04-13"),  # second > 12: month first
    ("03/04/2021", "2021"),  # ambiguous: only the year is certain
    ("05/05/2021", "2021-05-05"),
    ("03/2021", "2021-03"),
    ("March 2021", "2021-03"),
    ("Sept. 2020", "2020-09"),
    ("14 March 2021", "2021-03-14"),
    ("14th of March, 2021", "2021-03-14"),
    ("March 14, 2021", "2021-03-14"),
    ("Mar 1 2021", "2021-03-01"),
    (2021, "2021"),
    (dt.date(2021, 3, 14), "2021-03-14"),
    (dt.datetime(2021, 3, 14, 9, 0), "2021-03-14"),
    (None, None),
    ("unknown", None),
])
def test_dates(raw, expected) -> None:
    assert values.normalize_date(raw) == expected


@pytest.mark.parametrize("raw", ["soon", "2021-02-30", "2021-13", "last March", True, 12])
def test_dates_refused(raw) -> None:
    with pytest.raises(ValueError):
        values.normalize_date(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    (True, True), (False, False), ("yes", True), ("No", False), ("TRUE", True),
    ("false", False), ("y", True), ("n", False), (1, True), (0, False), ("1", True),
    (None, None), ("N/A", None), ("not stated", None),
])
def test_booleans(raw, expected) -> None:
    assert values.normalize_boolean(raw) is expected


@pytest.mark.parametrize("raw", ["maybe", 2, "partly"])
def test_booleans_refused(raw) -> None:
    with pytest.raises(ValueError):
        values.normalize_boolean(raw)


PHASES = ["Phase 1", "Phase 2", "Phase 3", "Not applicable"]


@pytest.mark.parametrize(("raw", "expected"), [
    ("Phase 2", "Phase 2"),
    ("phase 2", "Phase 2"),
    ("  PHASE   3 ", "Phase 3"),
    ("phase-1", "Phase 1"),
    ("Phase_1", "Phase 1"),
    ("not applicable", "Not applicable"),  # a category, not an absence marker
    (["Phase 2"], "Phase 2"),
    (None, None),
    ("", None),
    ("N/A", None),
])
def test_categories(raw, expected) -> None:
    assert values.normalize_category(raw, PHASES) == expected


def test_unknown_category_is_refused_with_the_list() -> None:
    with pytest.raises(ValueError, match="'Phase 1', 'Phase 2'"):
        values.normalize_category("Phase 5", PHASES)
    with pytest.raises(ValueError, match="exactly one"):
        values.normalize_category(["Phase 1", "Phase 2"], PHASES)


def test_unknown_category_becomes_other_when_allowed() -> None:
    sponsors = ["Industry", "Academic", "Government"]
    assert values.normalize_category("Charity", sponsors, allow_other=True) == "other"
    assert values.normalize_category("OTHER", sponsors, allow_other=True) == "other"
    assert values.normalize_category("academic", sponsors, allow_other=True) == "Academic"


def test_ambiguous_loose_match_is_not_guessed() -> None:
    # "a-b" and "a b" both fold to "ab": the punctuation-blind tier must not pick one.
    with pytest.raises(ValueError):
        values.normalize_category("AB", ["a-b", "a b"])


@pytest.mark.parametrize(("raw", "expected"), [
    (["industry", "Academic", "Industry"], ["Industry", "Academic"]),
    ("Industry, academic", ["Industry", "Academic"]),
    ("Industry; Government", ["Industry", "Government"]),
    ("Industry", ["Industry"]),
    ([], None),
    (None, None),
    (["N/A"], None),
])
def test_multi_select(raw, expected) -> None:
    assert values.normalize_categories(raw, ["Industry", "Academic", "Government"]) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("  ACME Corp  ", "ACME Corp"), ("N/A", None), ("not reported", None), ("", None),
    (None, None), (42, "42"),
])
def test_text(raw, expected) -> None:
    assert values.normalize_text(raw) == expected


def test_normalize_value_dispatches_on_the_variable_type() -> None:
    def var(vtype: VariableType, **kw) -> VariableInfo:
        return VariableInfo(uuid.uuid4(), "v", "V", vtype, **kw)

    assert values.normalize_value(var(VariableType.NUMBER), "1,234") == 1234.0
    assert values.normalize_value(var(VariableType.DATE), "March 2021") == "2021-03"
    assert values.normalize_value(var(VariableType.BOOLEAN), "yes") is True
    assert values.normalize_value(var(VariableType.TEXT), " x ") == "x"
    assert values.normalize_value(
        var(VariableType.CATEGORY, categories=("A", "B")), "b") == "B"
    assert values.normalize_value(
        var(VariableType.CATEGORY, categories=("A", "B"), multi_select=True), "a, b") == ["A", "B"]
