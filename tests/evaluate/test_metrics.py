"""Accuracy, precision, recall and F1 against hand-computed counts and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from extraction.evaluate.matching import Outcome as O
from extraction.evaluate.metrics import counts, scores

# 5 correct, 2 wrong, 1 omission, 1 hallucination, 3 both absent, 1 failed (gold absent)
CELLS = [O.CORRECT] * 5 + [O.WRONG] * 2 + [O.OMISSION, O.HALLUCINATION] + \
    [O.BOTH_ABSENT] * 3 + [O.FAILED_ABSENT]


def test_scores_of_a_small_hand_computed_case() -> None:
    accuracy, precision, recall, f1 = scores(np.array(CELLS))
    assert accuracy == pytest.approx(8 / 13)  # 5 correct + 3 both absent
    assert precision == pytest.approx(5 / 8)  # values given: 5 + 2 wrong + 1 hallucinated
    assert recall == pytest.approx(5 / 8)  # gold values: 5 + 2 wrong + 1 omitted
    assert f1 == pytest.approx(5 / 8)
    c = counts(np.array(CELLS))
    assert (c.cells, c.correct, c.wrong, c.omission, c.hallucination, c.both_absent,
            c.failed_absent) == (13, 5, 2, 1, 1, 3, 1)


def test_precision_and_recall_agree_with_scikit_learn_on_presence_labels() -> None:
    """As sklearn sees it: a wrong value is a false positive *and* a false negative."""
    rng = np.random.default_rng(7)
    cells = rng.integers(0, len(O), 400)
    # expand each wrong value into a missed right value plus a given wrong value
    pairs = {O.CORRECT: [(1, 1)], O.WRONG: [(1, 0), (0, 1)], O.OMISSION: [(1, 0)],
             O.HALLUCINATION: [(0, 1)]}
    expanded = [pair for code in cells for pair in pairs.get(O(code), [])]
    y_true, y_pred = [t for t, _ in expanded], [p for _, p in expanded]
    _, precision, recall, f1 = scores(cells)
    assert precision == pytest.approx(precision_score(y_true, y_pred))
    assert recall == pytest.approx(recall_score(y_true, y_pred))
    assert f1 == pytest.approx(f1_score(y_true, y_pred))


def test_empty_and_undefined_scores_are_nan() -> None:
    assert all(math.isnan(s) for s in scores(np.array([], dtype=np.int64)))
    accuracy, precision, recall, f1 = scores(np.array([O.BOTH_ABSENT, O.BOTH_ABSENT]))
    assert accuracy == 1.0 and math.isnan(precision) and math.isnan(recall) and math.isnan(f1)


def test_scores_are_vectorised_over_resamples() -> None:
    batch = np.array([CELLS, CELLS[::-1], [O.CORRECT] * len(CELLS)])
    out = scores(batch, axis=-1)
    assert out.shape == (4, 3)
    assert out[0, 0] == pytest.approx(8 / 13) and out[0, 1] == pytest.approx(8 / 13)
    assert out[:, 2].tolist() == [1.0, 1.0, 1.0, 1.0]
