"""Seeded bootstrap intervals, and the calibration figures of the stored confidence."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from extraction.evaluate import metrics
from extraction.evaluate.bootstrap import BootstrapConfig, confidence_intervals
from extraction.evaluate.calibration import calibration, review_budget, write_reliability_png


def _outcomes() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 5, 300)


def test_bootstrap_is_reproducible_with_a_seed_and_brackets_the_estimate() -> None:
    data = [_outcomes()]
    config = BootstrapConfig(resamples=500, seed=42)
    first = confidence_intervals(data, metrics.scores, config, outputs=4)
    again = confidence_intervals(data, metrics.scores, config, outputs=4)
    other = confidence_intervals(data, metrics.scores, BootstrapConfig(500, seed=43), outputs=4)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    point = metrics.scores(data[0])
    assert np.all(first[0] < point) and np.all(point < first[1])
    assert np.all(first[1] - first[0] < 0.2)  # 300 documents: a few points wide


def test_bootstrap_of_too_little_data_is_nan() -> None:
    low, high = confidence_intervals([np.array([0])], metrics.scores, BootstrapConfig(),
                                     outputs=4)
    assert np.isnan(low).all() and np.isnan(high).all()


def test_calibration_auroc_ece_and_bins() -> None:
    confidence = np.array([0.95, 0.9, 0.85, 0.8, 0.3, 0.2, 0.25, np.nan])
    right = np.array([True, True, True, False, False, True, False, False])
    result = calibration(confidence, right, bins=10)
    assert result.cells == 7 and result.right == 4
    assert result.auroc == pytest.approx(roc_auc_score(right[:7], confidence[:7]))
    # bins: (0.1,0.2] {0.2: right}, (0.2,0.3] {0.3 wrong, 0.25 wrong}, (0.7,0.8] {0.8 wrong},
    # (0.8,0.9] {0.9 right, 0.85 right}, (0.9,1] {0.95 right}
    expected = (abs(1 - 0.2) + 2 * abs(0 - 0.275) + abs(0 - 0.8) + 2 * abs(1 - 0.875)
                + abs(1 - 0.95)) / 7
    assert result.ece == pytest.approx(expected)
    assert sum(b.cells for b in result.bins) == 7 and len(result.bins) == 10
    assert calibration(np.array([0.5, 0.6]), np.array([True, True])).auroc is None


def test_review_budget_reviews_the_least_confident_first() -> None:
    confidence = np.array([np.nan, 0.1, 0.2, 0.9, 0.95, 0.5, 0.6, 0.7, 0.8, 0.99])
    right = np.array([False, False, True, True, True, False, True, True, True, True])
    rows = review_budget(confidence, right, shares=(0.1, 0.2, 0.3, 0.5))
    assert [r.reviewed for r in rows] == [1, 2, 3, 5]
    assert all(r.accuracy_before == pytest.approx(0.7) for r in rows)
    # the failed cell (no confidence) first, then 0.1, 0.2 (right already), 0.5, 0.6
    assert [r.accuracy_after for r in rows] == pytest.approx([0.8, 0.9, 0.9, 1.0])
    assert review_budget(np.array([]), np.array([], dtype=bool))[0].accuracy_after is None


def test_reliability_diagram_is_a_png(tmp_path: Path) -> None:
    confidence = np.random.default_rng(1).random(200)
    right = np.random.default_rng(2).random(200) < confidence
    path = write_reliability_png(calibration(confidence, right), tmp_path / "r.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert not math.isnan(calibration(confidence, right).ece)
