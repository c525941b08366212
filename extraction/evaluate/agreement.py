"""Chance-corrected agreement between two codings: Cohen's κ and Krippendorff's α.

Libraries for the published numbers: κ is scikit-learn's ``cohen_kappa_score``; nominal α is
the ``krippendorff`` package's ``alpha``. Two codings of a cell are "coders" and documents
are "units". "Not stated" is a category of its own on a nominal scale (agreeing that a
document does not say is agreement); on the interval scale (NUMBER) it has no position, so a
cell with a missing side is left out, as Krippendorff's α does with missing values.

Interval α is computed in closed form for two coders: the ``krippendorff`` package builds an
N × V × V array (V = distinct values), which at 10,000 documents with thousands of distinct
numbers needs terabytes. With pairable units only, α = 1 − (n − 1)·Σ(a − b)² / (n·SS), where
n counts the pairable values and SS is their sum of squared deviations; the tests check it
equals the package on small data, with missing values.

The bootstrap needs each statistic on a batch of resamples at once, so κ and nominal α are
also computed from contingency tables (:func:`kappa_from_table`,
:func:`alpha_nominal_from_table`) and interval α from sums over units
(:func:`alpha_from_sums`), vectorised over resamples; the tests check them against
scikit-learn and the package too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from extraction.evaluate.matching import category_key
from extraction.models import VariableType

__all__ = [
    "ABSENT",
    "alpha_from_sums",
    "alpha_interval",
    "alpha_nominal",
    "alpha_nominal_from_table",
    "cohen_kappa",
    "contingency",
    "encode",
    "interval_terms",
    "interval_value",
    "kappa_from_table",
    "nominal_label",
]

#: The label "not stated" gets on nominal scales.
ABSENT = "(not stated)"


def nominal_label(vtype: VariableType, value: Any, failed: bool = False) -> Any:
    """A value as a nominal label, the way matching sees it, or :data:`ABSENT`."""
    if failed or value is None or value == "" or value == []:
        return ABSENT
    if vtype is VariableType.CATEGORY:
        key = category_key(value)
        return "; ".join(sorted(key)) if isinstance(key, frozenset) else key
    return str(value).lower()


def interval_value(value: Any, failed: bool = False) -> float:
    """A value on the interval scale; NaN (a missing value) when absent or not a number."""
    if failed or value is None or isinstance(value, bool):
        return np.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def encode(gold: Sequence[Any], other: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Integer codes of two label sequences over their shared label set (sorted by text)."""
    labels = sorted({*gold, *other}, key=str)
    index = {label: i for i, label in enumerate(labels)}
    return (np.fromiter((index[g] for g in gold), np.int64, len(gold)),
            np.fromiter((index[o] for o in other), np.int64, len(other)), labels)


def cohen_kappa(gold: Sequence[Any], other: Sequence[Any]) -> float:
    """Cohen's κ (scikit-learn); NaN when undefined (fewer than two cells, or a single label)."""
    if len(gold) < 2:
        return float("nan")
    from sklearn.metrics import cohen_kappa_score

    a, b, labels = encode(gold, other)
    if len(labels) < 2:
        return float("nan")
    return float(cohen_kappa_score(a, b, replace_undefined_by=np.nan))


def alpha_nominal(gold: Sequence[Any], other: Sequence[Any]) -> float:
    """Krippendorff's α, nominal (the ``krippendorff`` package); NaN when undefined."""
    if len(gold) < 2:
        return float("nan")
    import krippendorff

    a, b, labels = encode(gold, other)
    if len(labels) < 2:
        return float("nan")
    return float(krippendorff.alpha(reliability_data=np.vstack([a, b]).astype(float),
                                    level_of_measurement="nominal"))


def contingency(a: np.ndarray, b: np.ndarray, labels: int) -> np.ndarray:
    """The labels × labels table of how often gold label i met extracted label j."""
    return np.bincount(a * labels + b, minlength=labels * labels).reshape(labels, labels)


def kappa_from_table(table: np.ndarray) -> np.ndarray:
    """Cohen's κ from contingency tables on the last two axes: (p_o − p_e) / (1 − p_e)."""
    table = np.asarray(table, dtype=np.float64)
    n = table.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.trace(table, axis1=-2, axis2=-1) / n
        expected = (table.sum(axis=-1) * table.sum(axis=-2)).sum(axis=-1) / (n * n)
        return np.where((n > 0) & (expected < 1), (observed - expected) / (1 - expected),
                        np.nan)


def alpha_nominal_from_table(table: np.ndarray) -> np.ndarray:
    """Nominal α of two complete codings from contingency tables on the last two axes.

    From the coincidence matrix: α = 1 − (n − 1)·2D / (n² − Σ n_c²), with n = 2 × units, D the
    disagreeing units and n_c how often label c was used by either coder.
    """
    table = np.asarray(table, dtype=np.float64)
    n = 2 * table.sum(axis=(-2, -1))
    disagree = n / 2 - np.trace(table, axis1=-2, axis2=-1)
    used = ((table.sum(axis=-1) + table.sum(axis=-2)) ** 2).sum(axis=-1)
    expected = n * n - used
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(expected > 0, 1 - (n - 1) * 2 * disagree / expected, np.nan)


def interval_terms(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per unit: pairable (0/1), a + b, a² + b², (a − b)² — zero where a side is missing.

    Interval α is a function of the sums of these over units (:func:`alpha_from_sums`), so
    a resample's α needs only the resample's sums.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pairable = ~(np.isnan(a) | np.isnan(b))
    a0, b0 = np.where(pairable, a, 0.0), np.where(pairable, b, 0.0)
    return pairable.astype(np.float64), a0 + b0, a0 * a0 + b0 * b0, (a0 - b0) ** 2


def alpha_from_sums(units: np.ndarray, total: np.ndarray, squares: np.ndarray,
                    disagreement: np.ndarray) -> np.ndarray:
    """Interval α from the sums of :func:`interval_terms` over the units."""
    n = 2.0 * np.asarray(units, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = squares - total * total / np.where(n > 0, n, 1)
        return np.where((n >= 4) & (spread > 1e-12 * np.maximum(squares, 1)),
                        1 - (n - 1) * disagreement / (n * np.where(spread > 0, spread, 1)),
                        np.nan)


def alpha_interval(a: np.ndarray, b: np.ndarray) -> float:
    """Interval α of two codings; NaN marks a missing value (that unit is left out).

    NaN when fewer than two units are pairable or every value is the same.
    """
    return float(alpha_from_sums(*(t.sum() for t in interval_terms(a, b))))
