"""Cohen's κ and Krippendorff's α: hand-computed cases and the reference libraries."""

from __future__ import annotations

import math

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from extraction.evaluate import agreement


def test_kappa_is_one_when_all_agree_and_zero_at_chance() -> None:
    assert agreement.cohen_kappa(["a", "b", "c", "a"], ["a", "b", "c", "a"]) == 1.0
    # p_o = 0.5, p_e = 0.5·0.5 + 0.5·0.5 = 0.5 → κ = 0
    assert agreement.cohen_kappa(["a", "a", "b", "b"], ["a", "b", "a", "b"]) == pytest.approx(0)
    # hand computed: p_o = 0.8, p_e = 0.6·0.6 + 0.4·0.4 = 0.52 → κ = 0.28 / 0.48
    gold = ["y", "y", "y", "n", "n"]
    other = ["y", "y", "n", "n", "y"]
    assert agreement.cohen_kappa(gold * 2, other * 2) == pytest.approx((0.6 - 0.52) / 0.48)


def test_kappa_is_undefined_with_a_single_label_or_one_cell() -> None:
    assert math.isnan(agreement.cohen_kappa(["a", "a"], ["a", "a"]))
    assert math.isnan(agreement.cohen_kappa(["a"], ["b"]))
    assert math.isnan(agreement.cohen_kappa([], []))


def test_nominal_alpha_hand_computed() -> None:
    # 4 units, 1 disagreement; n = 8 values: a ×5, b ×3 → α = 1 − 7·2 / (64 − 34)
    value = agreement.alpha_nominal(["a", "a", "b", "a"], ["a", "a", "b", "b"])
    assert value == pytest.approx(1 - 7 * 2 / (64 - 25 - 9))
    assert agreement.alpha_nominal(["a", "b"], ["a", "b"]) == 1.0


def test_interval_alpha_with_missing_values_matches_the_package() -> None:
    gold = np.array([1.0, 2.0, 3.0, np.nan, 5.0, 8.0, 13.0])
    other = np.array([1.0, 2.5, 3.0, 4.0, np.nan, 9.0, 12.0])
    expected = krippendorff.alpha(reliability_data=np.vstack([gold, other]),
                                  level_of_measurement="interval")
    assert agreement.alpha_interval(gold, other) == pytest.approx(expected)
    # units 4 and 5 have a single value: they drop out, so α equals α of the rest
    keep = [0, 1, 2, 5, 6]
    assert agreement.alpha_interval(gold[keep], other[keep]) == pytest.approx(expected)
    assert math.isnan(agreement.alpha_interval(np.array([1.0, np.nan]), np.array([1.0, 2.0])))


def test_vectorised_forms_equal_the_libraries_on_random_codings() -> None:
    rng = np.random.default_rng(11)
    tables, codings = [], []
    for _ in range(5):
        a = rng.integers(0, 4, 60)
        b = np.where(rng.random(60) < 0.6, a, rng.integers(0, 4, 60))
        codings.append((a, b))
        tables.append(agreement.contingency(a, b, 4))
    kappas = agreement.kappa_from_table(np.array(tables))
    alphas = agreement.alpha_nominal_from_table(np.array(tables))
    for (a, b), k, al in zip(codings, kappas, alphas):
        assert k == pytest.approx(cohen_kappa_score(a, b))
        assert al == pytest.approx(krippendorff.alpha(
            reliability_data=np.vstack([a, b]).astype(float), level_of_measurement="nominal"))
    x = rng.normal(size=(3, 40))
    y = x + rng.normal(scale=0.3, size=(3, 40))
    x[0, 3] = y[1, 7] = np.nan
    for xi, yi in zip(x, y):
        sums = [t.sum() for t in agreement.interval_terms(xi, yi)]
        assert agreement.alpha_from_sums(*sums) == pytest.approx(krippendorff.alpha(
            reliability_data=np.vstack([xi, yi]), level_of_measurement="interval"))
