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

The bootstrap needs each statistic on a batch of resamples at once, so :func:`kappa_codes`,
:func:`alpha_nominal_codes` and :func:`alpha_interval` are vectorised along the last axis;
the tests check them against scikit-learn and the package too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from extraction.evaluate.matching import category_key
from extraction.models import VariableType

__all__ = [
    "ABSENT",
    "alpha_interval",
    "alpha_nominal",
    "alpha_nominal_codes",
    "cohen_kappa",
    "encode",
    "interval_value",
    "kappa_codes",
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


def kappa_codes(a: np.ndarray, b: np.ndarray, labels: int, axis: int = -1) -> np.ndarray:
    """Cohen's κ of integer codes along ``axis``: (p_o − p_e) / (1 − p_e)."""
    a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
    observed = (a == b).mean(axis=-1)
    expected = sum((a == k).mean(axis=-1) * (b == k).mean(axis=-1) for k in range(labels))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(expected < 1, (observed - expected) / (1 - expected), np.nan)


def alpha_nominal_codes(a: np.ndarray, b: np.ndarray, labels: int,
                        axis: int = -1) -> np.ndarray:
    """Nominal α of two complete codings along ``axis`` (two coders, every unit pairable).

    From the coincidence matrix: α = 1 − (n − 1)·2D / (n² − Σ n_c²), with n = 2 × units, D the
    disagreeing units and n_c how often label c was used by either coder.
    """
    a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
    n = 2.0 * a.shape[-1]
    disagree = (a != b).sum(axis=-1)
    used = sum(((a == k).sum(axis=-1) + (b == k).sum(axis=-1)) ** 2.0 for k in range(labels))
    expected = n * n - used
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(expected > 0, 1 - (n - 1) * 2 * disagree / expected, np.nan)


def alpha_interval(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Interval α of two codings along ``axis``; NaN marks a missing value (unit left out).

    Returns NaN when fewer than two units are pairable or every value is the same.
    """
    a = np.moveaxis(np.asarray(a, dtype=np.float64), axis, -1)
    b = np.moveaxis(np.asarray(b, dtype=np.float64), axis, -1)
    pairable = ~(np.isnan(a) | np.isnan(b))
    a0, b0 = np.where(pairable, a, 0.0), np.where(pairable, b, 0.0)
    units = pairable.sum(axis=-1)
    n = 2.0 * units
    total = (a0 + b0).sum(axis=-1)
    squares = (a0 * a0 + b0 * b0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = squares - total * total / np.where(n > 0, n, 1)
        disagreement = ((a0 - b0) ** 2).sum(axis=-1)
        alpha = np.where((units >= 2) & (spread > 0),
                         1 - (n - 1) * disagreement / (n * np.where(spread > 0, spread, 1)),
                         np.nan)
    return float(alpha) if np.ndim(alpha) == 0 else alpha
