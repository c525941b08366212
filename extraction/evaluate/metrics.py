"""Accuracy, precision, recall and F1 from the outcomes of evaluated cells.

"A value is present" is the positive class, so each kind of error lands in its own place:

* accuracy = right cells / all cells (right = a matching value, or "not stated" on both sides);
* precision = correct values / values the extraction gave (wrong values and hallucinations
  lower it);
* recall = correct values / values the gold has (wrong values and omissions lower it);
* F1 = their harmonic mean.

A wrong value counts against both precision and recall (it is a value given and a value
missed). Every function here works on arrays of :class:`~extraction.evaluate.matching.Outcome`
codes along the last axis, so the bootstrap can evaluate a batch of resamples in one call; the
formulas are a few counts, checked against scikit-learn in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from extraction.evaluate.matching import Outcome

__all__ = ["SCORES", "Counts", "as_float", "counts", "scores", "scores_from_counts"]

#: The scores :func:`scores` returns, in order.
SCORES = ("accuracy", "precision", "recall", "f1")


@dataclass(frozen=True)
class Counts:
    """How many evaluated cells had each outcome."""

    cells: int
    correct: int
    wrong: int
    omission: int
    hallucination: int
    both_absent: int
    failed_absent: int

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def counts(outcomes: np.ndarray) -> Counts:
    """The outcome counts of one 1-D array of codes."""
    n = np.bincount(np.asarray(outcomes, dtype=np.int64), minlength=len(Outcome))
    return Counts(cells=int(n.sum()), correct=int(n[Outcome.CORRECT]),
                  wrong=int(n[Outcome.WRONG]), omission=int(n[Outcome.OMISSION]),
                  hallucination=int(n[Outcome.HALLUCINATION]),
                  both_absent=int(n[Outcome.BOTH_ABSENT]),
                  failed_absent=int(n[Outcome.FAILED_ABSENT]))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def scores_from_counts(per_outcome: np.ndarray) -> np.ndarray:
    """``[accuracy, precision, recall, f1]`` from counts per outcome on the last axis.

    ``per_outcome[..., k]`` is the number of cells with outcome ``k``; undefined scores (no
    cells, no values given, no gold values) are NaN.
    """
    c = np.asarray(per_outcome, dtype=np.float64)
    correct, wrong = c[..., Outcome.CORRECT], c[..., Outcome.WRONG]
    omission, hallucination = c[..., Outcome.OMISSION], c[..., Outcome.HALLUCINATION]
    total = c.sum(axis=-1)
    accuracy = _ratio(correct + c[..., Outcome.BOTH_ABSENT], total)
    precision = _ratio(correct, correct + wrong + hallucination)
    recall = _ratio(correct, correct + wrong + omission)
    f1 = _ratio(2 * correct, 2 * correct + 2 * wrong + hallucination + omission)
    return np.stack([accuracy, precision, recall, f1])


def scores(outcomes: np.ndarray, axis: int = -1) -> np.ndarray:
    """``[accuracy, precision, recall, f1]`` of outcome codes along ``axis`` (vectorised)."""
    codes = np.moveaxis(np.asarray(outcomes), axis, -1)
    per_outcome = np.stack([(codes == k).sum(axis=-1) for k in Outcome], axis=-1)
    return scores_from_counts(per_outcome)


def as_float(value: Any) -> float | None:
    """A score for JSON and tables: None instead of NaN."""
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value
