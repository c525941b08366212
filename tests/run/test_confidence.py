"""The stored confidence: self-report × grounding factor × mean token probability."""

from __future__ import annotations

import math

import pytest

from extraction.run.confidence import (
    CONTRADICTION_FACTOR,
    UNGROUNDED_FACTOR,
    UNSUPPORTED_FACTOR,
    combine,
    mean_token_probability,
)


def test_grounded_answer_keeps_the_self_reported_confidence() -> None:
    assert combine(0.8, found=True, grounded=True) == 0.8


def test_ungrounded_answer_is_halved() -> None:
    assert UNGROUNDED_FACTOR == 0.5
    assert combine(0.8, found=True, grounded=False) == 0.4
    assert combine(0.8, found=True, grounded=None) == 0.4  # no quote at all


def test_not_found_carries_the_confidence_of_the_absence_claim() -> None:
    assert combine(0.7, found=False, grounded=None) == 0.7
    assert combine(0.7, found=False, grounded=False) == 0.7  # nothing to ground


def test_contradicted_status_is_halved_on_top_of_grounding() -> None:
    assert CONTRADICTION_FACTOR == 0.5
    assert combine(0.8, found=True, grounded=True, contradicted=True) == 0.4
    assert combine(0.8, found=True, grounded=False, contradicted=True) == 0.2


def test_token_probability_multiplies_in() -> None:
    assert combine(0.8, found=True, grounded=True, token_probability=0.5) == 0.4
    assert combine(0.8, found=True, grounded=False, token_probability=0.5) == 0.2
    assert combine(0.6, found=False, grounded=None, token_probability=0.5) == 0.3


@pytest.mark.parametrize("raw", [1.7, -0.2])
def test_result_stays_within_0_and_1(raw) -> None:
    value = combine(raw, found=True, grounded=True, token_probability=1.3)
    assert 0.0 <= value <= 1.0


def test_missing_self_report_gives_no_confidence() -> None:
    assert combine(None, found=True, grounded=True) is None


def test_mean_token_probability() -> None:
    assert mean_token_probability([0.0, 0.0]) == 1.0
    assert mean_token_probability([math.log(0.5), math.log(0.9)]) == pytest.approx(0.7)
    assert mean_token_probability([]) is None
    assert mean_token_probability([float("-inf")]) is None


def test_unsupported_lowers_the_confidence_by_the_documented_factor() -> None:
    assert combine(0.9, found=True, grounded=True, unsupported=True) == round(
        0.9 * UNSUPPORTED_FACTOR, 4)
    assert combine(0.9, found=True, grounded=False, unsupported=True) == round(
        0.9 * 0.5 * UNSUPPORTED_FACTOR, 4)
    assert combine(0.9, found=True, grounded=True, unsupported=True,
                   unsupported_factor=1.0) == 0.9
    assert combine(0.9, found=False, grounded=None, unsupported=True) == 0.9
