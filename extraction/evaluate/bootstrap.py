"""95 % bootstrap confidence intervals, seeded, with SciPy's ``scipy.stats.bootstrap``.

Documents are the resampled units (a paired bootstrap: a resample draws documents with
replacement and keeps each one's gold and extracted values together), which also keeps the
cells of one document together in the overall figures. The interval is the percentile
interval: BCa's jackknife costs one statistic per document, which at 10,000 documents is far
slower than the resampling itself. Statistics are evaluated on batches of resamples at once,
with the batch sized so a batch holds at most ``MAX_BATCH_CELLS`` cells: memory stays flat
however many documents there are.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_BATCH_CELLS", "BootstrapConfig", "confidence_intervals"]

#: Resampled cells held at once (resamples per batch × documents).
MAX_BATCH_CELLS = 2_000_000


@dataclass(frozen=True)
class BootstrapConfig:
    """How intervals are computed; the report states all three."""

    resamples: int = 1000
    seed: int = 12345
    confidence: float = 0.95

    @classmethod
    def from_settings(cls, settings: object) -> BootstrapConfig:
        return cls(resamples=settings.eval_bootstrap_resamples,  # type: ignore[attr-defined]
                   seed=settings.eval_bootstrap_seed)  # type: ignore[attr-defined]


def confidence_intervals(
    data: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    config: BootstrapConfig,
    *,
    outputs: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds for each of the ``outputs`` values ``statistic`` returns.

    Args:
        data: paired 1-D arrays, one entry per document.
        statistic: ``statistic(*arrays, axis=-1)`` → an array of ``outputs`` values per
            resample (NaN where a value is undefined in a resample).
        config: resamples, seed, confidence level.
        outputs: how many values the statistic returns.

    Returns:
        ``(low, high)``, each of length ``outputs``; NaN where fewer than two documents, or
        where the statistic is undefined in some resample (e.g. κ when a resample holds a
        single label).
    """
    from scipy.stats import bootstrap

    n = len(data[0]) if data else 0
    nan = np.full(outputs, np.nan)
    if n < 2:
        return nan, nan.copy()
    batch = max(1, min(config.resamples, MAX_BATCH_CELLS // n))
    with warnings.catch_warnings():
        # A statistic that is NaN or constant in every resample gives a NaN or degenerate
        # interval, which the report shows as such; SciPy's warning about it adds nothing.
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            result = bootstrap(
                tuple(data), statistic, n_resamples=config.resamples, batch=batch,
                vectorized=True, paired=True, axis=-1, method="percentile",
                confidence_level=config.confidence, rng=np.random.default_rng(config.seed),
            )
    low = np.atleast_1d(np.asarray(result.confidence_interval.low, dtype=np.float64))
    high = np.atleast_1d(np.asarray(result.confidence_interval.high, dtype=np.float64))
    return low, high
